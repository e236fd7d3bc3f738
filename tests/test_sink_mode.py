"""`streamer sink` on its own: ClickHouse stays complete while every worker is down.

A worker runs with its sink off beside a standalone sink; the worker stops, more events
arrive, and the standalone sink writes them all. The `streamer jobs` standby then publishes
from what the sink wrote, and its trending equals a brute-force recount of every produced
event. Embedded chDB opens a directory from one process only, so the standby reads the
sink's directory after the sink stopped; in production both point at one ClickHouse server.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from streamer.core.partitioning import partition_for_post
from streamer.core.payloads import sink_positions_key, trending_key
from streamer.core.window import Window
from streamer.demo.services import LocalService
from tests.stream_helpers import (
    FAST_GROUP_ENV,
    WorkerProcess,
    keyed,
    now_ms,
    oracle,
    produce,
    random_events,
    read_trending,
    settle_exact,
    unique,
)

pytestmark = pytest.mark.timeout(300)
PARTITIONS = 2


def sink_env(kafka: LocalService, redis_url: str) -> dict[str, str]:
    """One deployment: fresh topic and app id, embedded ClickHouse per process."""
    topic = unique("sink-events")
    return {**os.environ, **FAST_GROUP_ENV, "REDIS_URL": redis_url,
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka.port}", "KAFKA_EVENTS_TOPIC": topic,
            "KAFKA_DLQ_TOPIC": topic + ".dlq", "STREAMER_APP_ID": unique("sink-app"),
            "STREAMER_TOPIC_PARTITIONS": str(PARTITIONS), "CLICKHOUSE_URL": ""}


async def wait_sink_positions(
    redis: Redis, app_id: str, events: list[dict[str, Any]], timeout_s: float
) -> None:
    """Until the sink committed every message (one event per message) of every partition."""
    want = Counter(partition_for_post(e["post_id"], PARTITIONS) for e in events)
    deadline = time.monotonic() + timeout_s
    got: dict[int, int] = {}
    while time.monotonic() < deadline:
        raw = await redis.hgetall(sink_positions_key(app_id))
        got = {int(k): int(v) for k, v in raw.items()}
        if got == dict(want):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"sink positions {got}, want {dict(want)}")


async def wait_key_gone(redis: Redis, timeout_s: float) -> None:
    """Until the stream's last trending value expired (nobody publishes any more)."""
    deadline = time.monotonic() + timeout_s
    while await redis.exists(trending_key(1)):
        assert time.monotonic() < deadline, "trending key never expired"
        await asyncio.sleep(0.2)


async def test_standalone_sink_keeps_clickhouse_complete_while_workers_are_down(
    kafka_service: LocalService, redis_url: str, redis_client: Redis, tmp_path: Path
) -> None:
    """Worker (sink off) + `streamer sink`; worker stops; standby's trending = recount of all."""
    env = sink_env(kafka_service, redis_url)
    sink = WorkerProcess(env, tmp_path / "sink", command="sink").start()
    worker = WorkerProcess({**env, "STREAMER_CLICKHOUSE_SINK": "false"}, tmp_path / "w").start()
    try:
        await asyncio.to_thread(sink.wait_ready, 120)
        await asyncio.to_thread(worker.wait_ready, 120)
        before = random_events(400, 40, now_ms(), seed=21)
        await produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_EVENTS_TOPIC"], keyed(before))
        posts, want, _ = await settle_exact(redis_client, before, PARTITIONS)
        assert want and posts == want
        assert await asyncio.to_thread(worker.terminate) == 0, worker.tail()
        during = random_events(400, 40, now_ms(), seed=22)  # every worker is down now
        await produce(env["KAFKA_BOOTSTRAP_SERVERS"], env["KAFKA_EVENTS_TOPIC"], keyed(during))
        await wait_sink_positions(redis_client, env["STREAMER_APP_ID"], before + during, 90)
        assert sink.get("/healthz")[0] == 200 and sink.get("/readyz")[0] == 200
        assert b"streamer_sink" in sink.get("/metrics")[1]
    finally:
        worker.kill()
        sink_code = await asyncio.to_thread(sink.terminate)
    assert sink_code == 0, sink.tail()
    await wait_key_gone(redis_client, 60)
    standby = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "streamer", "jobs", "--once", "--job", "trending"],
        env={**env, "STREAMER_DATA_DIR": str(tmp_path / "sink")}, capture_output=True,
        text=True, timeout=120)
    assert standby.returncode == 0, standby.stderr
    got, meta = await read_trending(redis_client)
    assert meta is not None and meta["mode"] == "clickhouse"
    window = Window(meta["window_start_ms"], meta["window_end_ms"])
    assert got == oracle(before + during, window, 50) and got


def test_sigterm_before_kafka_answers_exits_0(tmp_path: Path, redis_url: str) -> None:
    """A sink still waiting for Kafka stops cleanly on SIGTERM."""
    env = {**os.environ, "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
           "CLICKHOUSE_URL": ""}
    sink = WorkerProcess(env, tmp_path / "s", command="sink").start()
    try:
        deadline = time.monotonic() + 60
        while sink.get("/healthz")[0] != 200:
            assert time.monotonic() < deadline and sink.proc and sink.proc.poll() is None, sink.tail()
            time.sleep(0.1)
        assert sink.get("/readyz")[0] == 503
    finally:
        code = sink.terminate()
    assert code == 0, sink.tail()
