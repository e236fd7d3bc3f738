"""Merges do not depend on workers' clocks agreeing: two workers under libfaketime, one 5 s
ahead and one 5 s behind, still give exact and complete merges."""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.core.window import Window
from streamer.demo.services import LocalService
from tests.reliability_helpers import FakeClickHouse, await_until
from tests.stream_helpers import Cluster, keyed, oracle, produce, random_events, read_trending, settle_exact

SKEW_S = 5


def faketime_env(offset_s: int) -> dict[str, str]:
    """Environment that runs a child `offset_s` seconds off the real clock (Debian libfaketime)."""
    libs = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not libs:
        pytest.skip("libfaketime not installed (`apt-get install -y faketime`)")
    return {"LD_PRELOAD": libs[0], "FAKETIME": f"{offset_s:+d}s", "FAKETIME_DONT_RESET": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


async def watch_publishes(
    redis: Redis, count: int, timeout_s: float,
) -> list[tuple[list[Any], dict[str, Any]]]:
    """The next `count` distinct publishes (AssertionError naming how many were seen on timeout)."""
    seen: list[tuple[list[Any], dict[str, Any]]] = []
    last = 0
    deadline = time.monotonic() + timeout_s
    while len(seen) < count:
        assert time.monotonic() < deadline, f"{len(seen)} of {count} publishes in {timeout_s}s: {seen}"
        posts, meta = await read_trending(redis)
        if posts is not None and meta is not None and meta["generated_at_ms"] != last:
            last = meta["generated_at_ms"]
            seen.append((posts, meta))
        await asyncio.sleep(0.05)
    return seen


def clock_of(env: dict[str, str]) -> int:
    """Epoch ms as a child process with this environment reads it."""
    code = "import time; print(time.time_ns() // 1_000_000)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                         capture_output=True, check=True, timeout=60)
    return int(out.stdout)


def test_the_children_clocks_are_skewed() -> None:
    """The precondition of the skew case, without a duration: a child at +S reads at least S
    past the real clock before it started, a child at -S at least S before the clock after it."""
    before = wall_ms()
    assert clock_of(faketime_env(+SKEW_S)) - before >= SKEW_S * 1000 - 1
    ahead_of = clock_of(faketime_env(-SKEW_S))
    assert wall_ms() - ahead_of >= SKEW_S * 1000 - 1


async def test_skewed_workers_merge_exactly_and_completely(
    kafka_service: LocalService, redis_url: str, redis_client: Redis, fake_ch: FakeClickHouse,
    tmp_path: Path,
) -> None:
    """Worker clocks at +5 s and -5 s: merges publish all partitions, equal to the oracle.

    One shared ClickHouse: a merge that misses an answer under load falls back to it, and
    that publish must be exact too."""
    c = Cluster(kafka_service, redis_url, tmp_path, prefix="skew", CLICKHOUSE_URL=fake_ch.url)
    try:
        ahead = c.worker("ahead", **faketime_env(+SKEW_S))
        behind = c.worker("behind", **faketime_env(-SKEW_S))
        ahead.wait_ready(90)
        behind.wait_ready(90)
        await await_until(lambda: ahead.metric("streamer_partitions_owned") == 2
                          and behind.metric("streamer_partitions_owned") == 2, 180, "a 2/2 split")
        events = random_events(3000, 400, wall_ms(), seed=21)
        await produce(c.bootstrap, c.topic, keyed(events))
        got, want, _ = await settle_exact(redis_client, events, 4)
        assert got == want and want, ahead.tail() + behind.tail()
        seen = await watch_publishes(redis_client, 10, 120)  # ten intervals, minute edges likely
        for posts, meta in seen:
            if meta["mode"] == "stream":
                assert meta["partitions"] == [0, 1, 2, 3] and meta["complete"] is True, meta
            window = Window(meta["window_start_ms"], meta["window_end_ms"])
            want = oracle(events, window, 50)
            assert posts == want
        assert any(meta["mode"] == "stream" for _, meta in seen), seen
        assert c.stop_all() == [0, 0]
    finally:
        c.kill_all()
