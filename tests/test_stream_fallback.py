"""The in-worker fallback end to end: while a partition has no owner for longer than
STREAMER_FALLBACK_AFTER_SEC, the merger publishes ClickHouse's exact result (mode clickhouse),
never an incomplete merge; once every partition answers again, the stream is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.core.window import Window
from streamer.demo.services import LocalService
from tests.reliability_helpers import FakeClickHouse, await_until
from tests.stream_helpers import (
    Cluster,
    keyed,
    oracle,
    produce,
    random_events,
    read_trending,
    settle_exact,
    wait_for_publish,
)


async def record(redis: Redis, stop: asyncio.Event, out: list[tuple[list[Any], dict[str, Any]]]) -> None:
    """Every distinct publish until stop."""
    last = 0
    while not stop.is_set():
        posts, meta = await read_trending(redis)
        if posts is not None and meta is not None and meta["generated_at_ms"] != last:
            last = meta["generated_at_ms"]
            out.append((posts, meta))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


def modes(seen: list[tuple[list[Any], dict[str, Any]]]) -> list[str]:
    """The mode of every publish seen."""
    return [meta["mode"] for _, meta in seen]


async def test_unowned_partition_falls_back_to_clickhouse(
    kafka_service: LocalService, redis_url: str, redis_client: Redis, fake_ch: FakeClickHouse,
    tmp_path: Path,
) -> None:
    """SIGSTOP the worker owning half the partitions: ClickHouse publishes, exact; SIGCONT: stream."""
    c = Cluster(kafka_service, redis_url, tmp_path, prefix="fb", CLICKHOUSE_URL=fake_ch.url,
                STREAMER_FALLBACK_AFTER_SEC="2")
    stop = asyncio.Event()
    seen: list[tuple[list[Any], dict[str, Any]]] = []
    try:
        merger = c.worker("merger")
        merger.wait_ready(90)
        await wait_for_publish(redis_client, wall_ms(), timeout_s=60)  # it holds the merge lock
        other = c.worker("other")
        other.wait_ready(90)
        await await_until(lambda: other.metric("streamer_partitions_owned") == 2, 60, "a 2/2 split")
        events = random_events(2000, 300, wall_ms(), seed=31)
        await produce(c.bootstrap, c.topic, keyed(events))
        got, want, _ = await settle_exact(redis_client, events, 4)
        assert got == want and want, merger.tail()
        await await_until(lambda: _distinct_in_ch(fake_ch) == len({e["event_id"] for e in events}),
                          60, "every event in ClickHouse")
        recorder = asyncio.create_task(record(redis_client, stop, seen))
        assert other.proc is not None
        os.kill(other.proc.pid, signal.SIGSTOP)  # its partitions now have no live owner
        stopped_ms = wall_ms()
        await await_until(lambda: modes(seen).count("clickhouse") >= 2, 60, "ClickHouse publishes")
        os.kill(other.proc.pid, signal.SIGCONT)
        await await_until(lambda: modes(seen)[-1:] == ["stream"] and modes(seen).count("clickhouse") >= 2,
                          90, "the stream publishing again")
        stop.set()
        await recorder
        for posts, meta in seen:
            assert meta.get("complete", True) is True, meta  # never an incomplete merge
            if meta["mode"] == "stream":
                assert meta["partitions"] == [0, 1, 2, 3], meta
            else:  # only while the partitions had no owner
                assert meta["reason"] == "incomplete merge" and meta["generated_at_ms"] > stopped_ms
            assert posts == oracle(events, Window(meta["window_start_ms"], meta["window_end_ms"]), 50)
        assert c.stop_all() == [0, 0]
    finally:
        stop.set()
        c.kill_all()


def _distinct_in_ch(fake: FakeClickHouse) -> int:
    """Distinct event ids ClickHouse holds."""
    return int(fake.sql("SELECT uniqExact(event_id) FROM nova.post_events")[0][0])
