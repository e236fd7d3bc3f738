"""The worker's sink takes the stream's decoded rows (the tap): ClickHouse still holds exactly
the rows a sink reading the topic alone would write, across a kill -9 and a restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from redis.asyncio import Redis

from streamer.clickhouse.client import ENGINE_ID_FILE
from streamer.core.payloads import sink_positions_key
from streamer.core.sink_rows import TYPE_NAMES, rows_of
from streamer.demo.services import LocalService
from tests.stream_helpers import (
    Cluster,
    Message,
    WorkerProcess,
    event,
    keyed,
    now_ms,
    produce,
    random_events,
    wait_metric,
)
from tests.waiting import await_until

pytestmark = pytest.mark.timeout(240)
PARTITIONS = 4
Row = tuple[str, int, int, str, int, int, int]  # id, post, user, type, ts, partition, offset


def mixed_round(n: int, now: int) -> list[Message]:
    """Single events, arrays with members of other posts (forwarded), duplicates, invalid and
    future events: every case the sink's own decode and partition check decide."""
    events = random_events(400, 60, now, seed=100 + n)
    arrays: list[Message] = [(str(events[i]["post_id"]).encode(), orjson.dumps(events[i:i + 40]),
                              None) for i in range(200, 400, 40)]
    bad: list[Message] = [
        (b"1", b"not json{", None),
        (b"2", orjson.dumps(event(f"future-{n}", 2, now + 20 * 60_000)), None),
        (b"3", orjson.dumps([event(f"ok-{n}", 3, now - 5), {"event_id": "bad"}]), None),
    ]
    return keyed(events[:200]) + arrays + bad + keyed(events[:20])  # the last: duplicates


async def topic_records(c: Cluster) -> list[Any]:
    """Every record of the topic: read until a 2 s fetch brings nothing more (the broker's list
    of end offsets is not used: tansu answers it with the last batch's first offset + 1)."""
    consumer = AIOKafkaConsumer(c.topic, bootstrap_servers=c.bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        while batch := await consumer.getmany(timeout_ms=2000):
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def ends_of(records: list[Any]) -> dict[int, int]:
    """Next offset of every partition that has records."""
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, 0), r.offset + 1)
    return ends


async def sink_caught_up(c: Cluster, redis: Redis, engine: str) -> bool:
    """The sink committed up to the end of every partition (forwards included)."""
    key = sink_positions_key(c.env["STREAMER_APP_ID"], engine)
    positions = {int(p): int(o) for p, o in (await redis.hgetall(key)).items()}
    return positions == ends_of(await topic_records(c))


def engine_id(data_dir: Path) -> str:
    """The embedded engine's id (it names the sink's group and its positions hash)."""
    return (data_dir / "clickhouse" / ENGINE_ID_FILE).read_text().strip()


def rows_in_clickhouse(data_dir: Path) -> set[Row]:
    """Every distinct row of post_events (read in a child process, the worker stopped)."""
    code = (
        "import clickhouse_connect,orjson,sys;"
        f"c=clickhouse_connect.get_client(dsn='chdb://{(data_dir / 'clickhouse').resolve()}');"
        "r=c.query('SELECT DISTINCT event_id, post_id, user_id, event_type,"
        " toUnixTimestamp64Milli(event_time), kafka_partition, kafka_offset"
        " FROM nova.post_events').result_rows;"
        "sys.stdout.write(orjson.dumps([list(x) for x in r]).decode())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {tuple(r) for r in orjson.loads(out.stdout.strip().splitlines()[-1])}


def expected_rows(records: list[Any], now: int) -> set[Row]:
    """What a sink reading the whole topic alone writes (rows_of over every record)."""
    rows = rows_of(np.array([r.partition for r in records], dtype=np.int32),
                   np.array([r.offset for r in records], dtype=np.int64),
                   [r.value for r in records], PARTITIONS, now)
    return set(zip(rows.event_ids, rows.post_ids.tolist(), rows.user_ids.tolist(),
                   TYPE_NAMES[rows.types].tolist(), rows.ts_ms.tolist(),
                   rows.partitions.tolist(), rows.offsets.tolist(), strict=True))


async def until_tapped(c: Cluster, w: WorkerProcess, now: int, timeout_s: float = 60) -> None:
    """Produce a small batch every 100 ms until the sink took rows from the stream: it follows
    a partition only while offers keep coming (a pause of a second gives it back), and a sink
    that fetched a round before the stream offered it has nothing to take from that round."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    n = 0
    while w.metric("streamer_sink_tapped_events_total") == 0:
        assert loop.time() < deadline, f"the sink never took rows from the stream\n{w.tail()}"
        await produce(c.bootstrap, c.topic, keyed(random_events(20, 60, now, seed=1000 + n)))
        n += 1
        await asyncio.sleep(0.1)


class TestTap:
    """One worker on the embedded default, its stream and sink sharing the decode."""

    async def test_rows_exact_across_kill_and_restart(
        self, kafka_service: LocalService, redis_url: str, redis_client: Redis, tmp_path: Path
    ) -> None:
        """Rounds produced while the worker runs (its sink level with its stream takes the
        stream's rows), a kill -9 mid-round and a restart: ClickHouse holds exactly the rows
        of every offset, the same as rows_of over the whole topic."""
        c = Cluster(kafka_service, redis_url, tmp_path, PARTITIONS)
        try:
            w: WorkerProcess = c.worker("w1")
            w.wait_ready(90)
            now = now_ms()
            for n in range(3):
                await produce(c.bootstrap, c.topic, mixed_round(n, now))
                await wait_metric(w, "streamer_events_processed_total", 380 * (n + 1))
            await until_tapped(c, w, now)
            done = w.metric("streamer_events_processed_total")
            producing = asyncio.create_task(produce(c.bootstrap, c.topic, mixed_round(3, now)))
            await wait_metric(w, "streamer_events_processed_total", done + 50)
            w.kill()
            await producing
            w = c.worker("w1")
            w.wait_ready(120)
            await until_tapped(c, w, now)  # the restarted worker's sink takes rows too
            await produce(c.bootstrap, c.topic, mixed_round(4, now))
            engine = engine_id(w.data_dir)
            await await_until(lambda: sink_caught_up(c, redis_client, engine), 90,
                              "the sink writing every partition to its end")
            want = expected_rows(await topic_records(c), now_ms())
            assert c.stop_all() == [0]
            assert rows_in_clickhouse(w.data_dir) == want
        finally:
            c.kill_all()
