"""The ClickHouse sink consumer: at-least-once into post_events, positions, no loss on failure."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
from aiokafka import ConsumerRecord, TopicPartition

from streamer.clickhouse import queries
from streamer.clickhouse.client import ENGINE_ID_FILE, ClickHouse
from streamer.core.partitioning import partition_for_post, post_key
from streamer.core.sink_rows import SinkRows, rows_of
from streamer.demo.services import LocalService
from streamer.kafka.admin import ensure_topics
from streamer.kafka.sink_consumer import ClickHouseSinkConsumer, fetched_rows, sink_group
from streamer.settings.model import Settings, load_settings
from tests.stream_helpers import produce
from tests.waiting import await_until

# From the clock, not a fixed instant: post_events has a TTL, and rows stamped a month
# before today are expired on insert (a fixed instant made these tests fail once it aged).
NOW_MS = time.time_ns() // 1_000_000
PARTITIONS = 4


def event_doc(i: int, post_id: int) -> dict[str, object]:
    """A valid event as sent on the wire."""
    return {"event_id": f"s-{i}", "post_id": post_id, "user_id": i, "event_type": "like",
            "ts": NOW_MS - i}


async def run_sink_until(sink: ClickHouseSinkConsumer, done: Callable[[], bool]) -> None:
    """Run a sink until `done()` holds, then stop it as the worker does; AssertionError when it
    does not hold within 60 s (the sink is stopped first)."""
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    try:
        await await_until(done, 60, "the sink's condition", 0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def topic_with_events(
    kafka: LocalService, count: int, posts: int
) -> tuple[str, list[dict[str, object]]]:
    """A fresh topic holding `count` valid events, each keyed and placed by its post."""
    topic = f"sink-{uuid.uuid4().hex[:8]}"
    bootstrap = f"127.0.0.1:{kafka.port}"
    await ensure_topics(bootstrap, {topic: PARTITIONS})
    docs = [event_doc(i, i % posts) for i in range(count)]
    await produce(bootstrap, topic, [
        (post_key(i % posts), orjson.dumps(d), partition_for_post(i % posts, PARTITIONS))
        for i, d in enumerate(docs)
    ])
    return topic, docs


def sink_settings(kafka: LocalService, topic: str) -> Settings:
    """Fast group timings for tansu; a unique app id per test."""
    return load_settings({
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka.port}", "KAFKA_EVENTS_TOPIC": topic,
        "STREAMER_APP_ID": f"sink-{uuid.uuid4().hex[:8]}", "STREAMER_REBALANCE_TIMEOUT_SEC": "3",
        "STREAMER_SESSION_TIMEOUT_SEC": "6", "STREAMER_HEARTBEAT_INTERVAL_SEC": "1",
        "STREAMER_SINK_FLUSH_MS": "100",
    })


class TestSinkGroup:
    """A server is shared by one sink group; each embedded engine has a group of its own."""

    def test_an_embedded_engine_keeps_its_id_and_its_own_group(self, tmp_path: Path) -> None:
        """The id is written into the engine's directory once and read back after a restart;
        two engines get two groups, a server the shared one."""
        settings = load_settings({"STREAMER_APP_ID": "blue"})
        one = ClickHouse(f"chdb://{tmp_path / 'a'}", "nova", 1000)
        again = ClickHouse(f"chdb://{tmp_path / 'a'}", "nova", 1000)
        other = ClickHouse(f"chdb://{tmp_path / 'b'}", "nova", 1000)
        server = ClickHouse("http://127.0.0.1:8123", "nova", 1000)
        assert one.engine_id is not None and one.engine_id == again.engine_id
        assert (tmp_path / "a" / ENGINE_ID_FILE).read_text().strip() == one.engine_id
        assert other.engine_id not in (None, one.engine_id)
        assert server.engine_id is None
        assert sink_group(settings, server.engine_id) == "blue-clickhouse-sink"
        assert sink_group(settings, one.engine_id) == f"blue-clickhouse-sink-{one.engine_id}"
        assert sink_group(settings, one.engine_id) != sink_group(settings, other.engine_id)


class TestRowsOf:
    """Which events of a fetched batch the sink writes."""

    def test_only_valid_events_in_their_own_partition_with_positions(self) -> None:
        """Misrouted members, invalid messages and bad members are skipped; positions kept."""
        own = next(p for p in range(1, 1000) if partition_for_post(p, PARTITIONS) == 1)
        other = next(p for p in range(1, 1000) if partition_for_post(p, PARTITIONS) == 2)
        batch = orjson.dumps([event_doc(1, own), event_doc(2, other), {"event_id": "bad"}])
        rows = rows_of(
            np.array([1, 1, 1], dtype=np.int32), np.array([10, 11, 12], dtype=np.int64),
            [batch, b"not json", orjson.dumps(event_doc(3, own))], PARTITIONS, NOW_MS,
        )
        assert [e.event_id for e in rows.events()] == ["s-1", "s-3"]
        assert rows.positions() == [(1, 10), (1, 12)]

    def test_a_fetch_of_several_partitions(self) -> None:
        """A getmany result: each record keeps its partition and offset, bytes are counted."""
        posts = {part: next(p for p in range(1, 1000) if partition_for_post(p, PARTITIONS) == part)
                 for part in (0, 3)}
        values = {(0, 5): orjson.dumps(event_doc(1, posts[0])), (0, 6): b"not json",
                  (3, 7): orjson.dumps(event_doc(2, posts[3]))}
        batch: dict[TopicPartition, list[object]] = {
            TopicPartition("ev", part): [
                ConsumerRecord("ev", part, offset, 0, 0, None, value, None, -1, len(value), ())
                for (p, offset), value in values.items() if p == part] for part in (3, 0)}
        batch[TopicPartition("ev", 1)] = []
        rows, nbytes = fetched_rows(batch, PARTITIONS, NOW_MS)
        assert [e.event_id for e in rows.events()] == ["s-2", "s-1"]
        assert rows.positions() == [(3, 7), (0, 5)]
        assert nbytes == sum(map(len, values.values()))
        assert fetched_rows({}, PARTITIONS, NOW_MS)[1] == 0


class TestSinkConsumer:
    """Against a real tansu broker and the embedded ClickHouse."""

    async def test_writes_every_event_once_committed_after_failures(
        self, kafka_service: LocalService, clickhouse: ClickHouse
    ) -> None:
        """Inserts that fail are retried with the same rows; offsets commit only after success."""
        topic, docs = await topic_with_events(kafka_service, 300, 37)
        failures = [3]
        published: dict[int, int] = {}

        async def insert(rows: SinkRows) -> None:
            if failures[0] > 0:
                failures[0] -= 1
                raise RuntimeError("ClickHouse down (injected)")
            await queries.insert_rows(clickhouse, rows)

        async def publish(offsets: dict[int, int]) -> None:
            published.update(offsets)

        sink = ClickHouseSinkConsumer(sink_settings(kafka_service, topic), PARTITIONS, insert, publish)
        await run_sink_until(sink, lambda: sum(published.values()) >= len(docs))
        assert failures == [0]
        assert sum(published.values()) == len(docs)
        rows = await clickhouse.rows(
            "SELECT count(), uniqExact(event_id), min(kafka_offset) FROM nova.post_events")
        assert rows[0][0] == rows[0][1] == len(docs) and rows[0][2] == 0

    async def test_stop_during_outage_loses_nothing(
        self, kafka_service: LocalService, clickhouse: ClickHouse
    ) -> None:
        """Stopped while ClickHouse is down: nothing committed, a new sink writes everything."""
        topic, docs = await topic_with_events(kafka_service, 120, 11)
        settings = sink_settings(kafka_service, topic)
        attempts = [0]

        async def down(rows: SinkRows) -> None:
            attempts[0] += 1
            raise RuntimeError("ClickHouse down (injected)")

        async def ignore(offsets: dict[int, int]) -> None:
            return None

        first = ClickHouseSinkConsumer(settings, PARTITIONS, down, ignore)
        await run_sink_until(first, lambda: attempts[0] >= 2)
        assert attempts[0] >= 2 and first.committed == {}

        async def insert(rows: SinkRows) -> None:
            await queries.insert_rows(clickhouse, rows)

        written: dict[int, int] = {}

        async def publish(offsets: dict[int, int]) -> None:
            written.update(offsets)

        second = ClickHouseSinkConsumer(settings, PARTITIONS, insert, publish)
        await run_sink_until(second, lambda: sum(written.values()) >= len(docs))
        rows = await clickhouse.rows("SELECT uniqExact(event_id) FROM nova.post_events")
        assert rows[0][0] == len(docs)


class TestSinkBatches:
    """Batch bounds count events, not messages; the columns land exactly."""

    async def test_array_messages_insert_at_most_batch_size_events_exactly(
        self, kafka_service: LocalService, clickhouse: ClickHouse
    ) -> None:
        """25-event arrays with a 60-event batch: every insert <= 60, every row exact once."""
        topic = f"sink-{uuid.uuid4().hex[:8]}"
        bootstrap = f"127.0.0.1:{kafka_service.port}"
        await ensure_topics(bootstrap, {topic: PARTITIONS})
        docs: list[dict[str, object]] = [
            {"event_id": f"a-{i}", "post_id": 10**11 + i % 97, "user_id": 2**62 + i,
             "event_type": ("view", "like", "comment", "share")[i % 4], "ts": NOW_MS - 7 * i}
            for i in range(1000)]
        by_part: dict[int, list[dict[str, object]]] = {}
        for d in docs:
            by_part.setdefault(partition_for_post(int(d["post_id"]), PARTITIONS), []).append(d)  # type: ignore[call-overload]
        messages = [(post_key(int(ds[i]["post_id"])), orjson.dumps(ds[i:i + 25]), p)  # type: ignore[call-overload]
                    for p, ds in by_part.items() for i in range(0, len(ds), 25)]
        await produce(bootstrap, topic, messages)
        settings = sink_settings(kafka_service, topic).model_copy(
            update={"streamer_sink_batch_size": 60})
        sizes: list[int] = []
        written: dict[int, int] = {}

        async def insert(rows: SinkRows) -> None:
            sizes.append(len(rows))
            await queries.insert_rows(clickhouse, rows)

        async def publish(offsets: dict[int, int]) -> None:
            written.update(offsets)

        sink = ClickHouseSinkConsumer(settings, PARTITIONS, insert, publish)
        await run_sink_until(sink, lambda: sum(written.values()) >= len(messages))
        assert sum(sizes) == len(docs) and max(sizes) <= 60
        got = await clickhouse.rows(
            "SELECT event_id, post_id, user_id, event_type, toUnixTimestamp64Milli(event_time)"
            " FROM nova.post_events ORDER BY event_id")
        expected = sorted((d["event_id"], d["post_id"], d["user_id"], d["event_type"], d["ts"])
                          for d in docs)
        assert sorted(tuple(r) for r in got) == expected
        per_part = await clickhouse.rows(
            "SELECT kafka_partition, count(), max(kafka_offset) FROM nova.post_events"
            " GROUP BY kafka_partition ORDER BY 1")
        assert [(p, n) for p, n, _ in per_part] == sorted((p, len(ds)) for p, ds in by_part.items())
        assert all(last == written[p] - 1 for p, _, last in per_part)
