"""ClickHouse sink as its own consumer group: at-least-once into post_events, never lost.

It reads the events topic independently of the stream (group `{app_id}-clickhouse-sink`; into
an embedded engine `{app_id}-clickhouse-sink-{engine id}`, one whole copy per engine),
writes each valid event that sits in its post's partition with its Kafka position, and commits
offsets only after ClickHouse accepted the rows. A crash or a ClickHouse outage therefore
re-reads instead of losing; repeats are harmless because every query counts an event_id once.
Misrouted events are skipped here: their forwarded copy is written from the right partition.
The committed positions are mirrored to Redis so reconciliation can wait for the sink.
Rows stay columns from the decoder to the insert; a batch holds at most about
STREAMER_SINK_BATCH_BYTES of messages, and each insert at most STREAMER_SINK_BATCH_SIZE events.
In a worker, the sink takes the stream's decoded rows through the tap (`core.sink_tap`) for
the partitions where it is level with the stream, and pauses them in its own consumer; every
other partition, and any the tap gives back, it fetches itself from its own next offset.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from streamer.clock import wall_ms
from streamer.core.sink_rows import SinkRows, rows_of
from streamer.core.sink_tap import SinkTap
from streamer.kafka.client import client_kwargs
from streamer.ops.metrics import (
    SINK_BATCH,
    SINK_FAILURES,
    SINK_LAG,
    SINK_LAST_SUCCESS,
    SINK_PENDING,
    SINK_TAPPED,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.stream.sink")
InsertFn = Callable[[SinkRows], Awaitable[None]]
PositionsFn = Callable[[dict[int, int]], Awaitable[None]]
MAX_BACKOFF_S = 30.0
TAP_POLL_MS = 50  # while following the stream, how often a batch looks for taken rows
DRAIN_S = 15.0  # on a clean stop, how long the sink may keep catching up with the stream
Fetched = dict[TopicPartition, list[object]]
_VALUE, _OFFSET = attrgetter("value"), attrgetter("offset")


def sink_group(settings: Settings, engine: str | None = None) -> str:
    """Consumer group of the sink (separate from the stream's). A server is shared, so its sinks
    share one group; an embedded engine is one process's whole copy, so its sink reads every
    partition in a group of its own (otherwise each engine would hold only part of the events)."""
    base = f"{settings.streamer_app_id}-clickhouse-sink"
    return base if engine is None else f"{base}-{engine}"


def fetched_rows(batch: Fetched, partitions: int, now_ms: int) -> tuple[SinkRows, int]:
    """The rows of one getmany result and its message bytes (one C-level pass per field and
    partition: on one-event messages a Python step per record is a large part of the sink)."""
    values: list[bytes | None] = []
    parts: list[npt.NDArray[np.int32]] = [np.empty(0, np.int32)]
    offsets: list[npt.NDArray[np.int64]] = [np.empty(0, np.int64)]
    for tp, records in batch.items():
        values.extend(map(_VALUE, records))
        parts.append(np.full(len(records), tp.partition, dtype=np.int32))
        offsets.append(np.fromiter(map(_OFFSET, records), dtype=np.int64, count=len(records)))
    rows = rows_of(np.concatenate(parts), np.concatenate(offsets), values, partitions, now_ms)
    return rows, sum(map(len, filter(None, values)))


def tap_idle_ms(flush_ms: int) -> int:
    """How long the sink follows a partition without an offer before it fetches it again."""
    return max(1000, 2 * flush_ms)


class _TapListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """The sink group moved partitions: the tap forgets what it knew of them."""

    def __init__(self, tap: SinkTap) -> None:
        self.tap = tap

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.tap.forget({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.tap.forget({tp.partition for tp in assigned})


@dataclass(slots=True)
class _Batch:
    """What one sink batch collected: rows, the next offset of each partition, sizes."""

    parts: list[SinkRows] = field(default_factory=list)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)
    events: int = 0
    nbytes: int = 0

    def add(self, rows: SinkRows, nbytes: int, ends: dict[TopicPartition, int]) -> None:
        """Rows of a fetch or of the tap (later next offsets replace earlier ones)."""
        self.parts.append(rows)
        self.events += len(rows)
        self.nbytes += nbytes
        self.offsets.update(ends)


class ClickHouseSinkConsumer:
    """Fetch, insert (retrying with back-off), then commit; bounded by one batch in memory."""

    def __init__(
        self, settings: Settings | LiveSettings, partitions: int, insert: InsertFn,
        publish_positions: PositionsFn, engine: str | None = None, tap: SinkTap | None = None,
    ) -> None:
        self.live = live_of(settings)  # batch bounds are read once per batch
        self.settings = settings = self.live.current
        self.partitions = partitions
        self.insert = insert
        self.publish_positions = publish_positions
        self.committed: dict[int, int] = {}
        self.events_per_message = 1.0  # measured on each fetch: sizes the next getmany
        self.drain_targets: dict[int, int] = {}
        self.tap = tap
        s = settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=sink_group(s, engine),
            client_id=f"{s.streamer_app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            rebalance_timeout_ms=s.streamer_rebalance_timeout_sec * 1000,
            session_timeout_ms=s.streamer_session_timeout_sec * 1000,
            heartbeat_interval_ms=s.streamer_heartbeat_interval_sec * 1000,
            max_poll_interval_ms=max(300_000, s.streamer_rebalance_timeout_sec * 1000),
            fetch_max_bytes=s.streamer_sink_batch_bytes,
            **client_kwargs(s),
        )
        if tap is None:
            self.consumer.subscribe([s.kafka_events_topic])
        else:
            self.consumer.subscribe([s.kafka_events_topic], listener=_TapListener(tap))

    def drain_to(self, targets: dict[int, int]) -> None:
        """On a clean stop, keep writing until these next-offsets (what the stream read) are in."""
        self.drain_targets = dict(targets)

    async def run(self, stop: asyncio.Event) -> None:
        """Until stop: fetch a batch, write it, commit it. Unwritten batches are re-read later."""
        await self.consumer.start()
        try:
            while not stop.is_set():
                if not await self._step(stop):
                    return
            drained = asyncio.Event()
            asyncio.get_running_loop().call_later(DRAIN_S, drained.set)
            while self._behind() and not drained.is_set():
                if not await self._step(drained):
                    return
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.consumer.stop(), 10)

    async def _step(self, stop: asyncio.Event) -> bool:
        self.settings = s = self.live.current
        if self.tap is not None:  # taken rows wait at most one batch
            self.tap.max_events, self.tap.max_bytes = s.streamer_sink_batch_size, s.streamer_sink_batch_bytes
            self.tap.idle_ms = tap_idle_ms(s.streamer_sink_flush_ms)
        batch = await self._fetch()
        if not batch.offsets:
            self._export_lag(caught_up=True)
            return True
        return await self._write(SinkRows.concat(batch.parts), batch.offsets, stop)

    def _export_lag(self, caught_up: bool = False) -> None:
        """streamer_sink_lag per assigned partition: its end minus what the sink has written
        (a partition followed through the tap is not fetched: the stream's end of it counts)."""
        with contextlib.suppress(Exception):  # metadata not fetched yet: keep the last values
            paused = self.consumer.paused()
            ends = self.tap.stream_ends if self.tap is not None else {}
            for tp in self.consumer.assignment():
                known = (self.consumer.highwater(tp), ends.get(tp.partition))
                high = max((h for h in known if h is not None), default=None)
                done = caught_up and tp not in paused
                written = high if done else self.committed.get(tp.partition)
                if high is not None and written is not None:
                    SINK_LAG.labels(partition=str(tp.partition)).set(max(high - written, 0))

    async def _fetch(self) -> _Batch:
        """Fetch (and take from the tap) until the batch holds STREAMER_SINK_BATCH_SIZE events or
        _BYTES of messages, or STREAMER_SINK_FLUSH_MS passed; the next offset of each partition."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.streamer_sink_flush_ms / 1000
        batch = _Batch()
        while batch.events < s.streamer_sink_batch_size and batch.nbytes < s.streamer_sink_batch_bytes:
            tapped = self._take_tapped(batch)
            wait_ms = int((deadline - loop.time()) * 1000)
            if wait_ms <= 0 and batch.offsets:
                break
            following = self.tap is not None and bool(self.tap.following)
            poll_ms = min(wait_ms, TAP_POLL_MS) if following else wait_ms
            want = (s.streamer_sink_batch_size - batch.events) / self.events_per_message
            got: Fetched = await self.consumer.getmany(
                timeout_ms=max(poll_ms, 0), max_records=max(1, int(want)))
            got = self._untapped(got)
            if got:
                rows, size = fetched_rows(got, self.partitions, wall_ms())
                messages = sum(len(ms) for ms in got.values())
                self.events_per_message = max(1.0, len(rows) / messages) if rows else 1.0
                batch.add(rows, size, {tp: ms[-1].offset + 1 for tp, ms in got.items()})  # type: ignore[attr-defined]
            elif not tapped and (not following or wait_ms <= 0):
                break
        self._take_tapped(batch)
        return batch

    def _take_tapped(self, batch: _Batch) -> bool:
        """Apply the tap's pauses and seeks to the consumer; move its taken rows into the batch."""
        if self.tap is None:
            return False
        topic = self.settings.kafka_events_topic
        assigned = self.consumer.assignment()
        sync = self.tap.sync(wall_ms())
        tps = [tp for tp in (TopicPartition(topic, p) for p in sync.pause) if tp in assigned]
        if tps:
            self.consumer.pause(*tps)
        for partition, offset in sync.seek.items():
            tp = TopicPartition(topic, partition)
            if tp in assigned:
                self.consumer.seek(tp, offset)
                self.consumer.resume(tp)
        for piece in sync.taken.pieces:
            batch.add(piece.rows, piece.nbytes, {TopicPartition(topic, piece.partition): piece.end})
        SINK_TAPPED.inc(sync.taken.events)
        return bool(sync.taken.pieces)

    def _untapped(self, got: Fetched) -> Fetched:
        """The fetched records to write: none of a partition the tap brings, none already taken."""
        if self.tap is None or not got:
            return got
        out: Fetched = {}
        for tp, records in got.items():
            if not records:
                continue
            first, last = records[0].offset, records[-1].offset  # type: ignore[attr-defined]
            start = self.tap.fetched(tp.partition, first, last)
            if start is not None:
                out[tp] = records if start == first else [
                    r for r in records if r.offset >= start]  # type: ignore[attr-defined]
        return out

    def _behind(self) -> bool:
        """True while an assigned partition's written offset is below its drain target."""
        if not self.drain_targets:
            return False
        assigned = {tp.partition for tp in self.consumer.assignment()}
        if not assigned:
            return True  # still joining: the bounded drain waits for it
        return any(self.committed.get(p, 0) < self.drain_targets.get(p, 0) for p in assigned)

    async def _write(
        self, rows: SinkRows, offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> bool:
        """Insert (in inserts of at most the batch size) then commit; False when stopped first."""
        SINK_PENDING.set(len(rows))
        for chunk in rows.chunks(self.settings.streamer_sink_batch_size):
            if not await self._insert(chunk, stop):
                return False  # not committed: read again after restart
            SINK_BATCH.observe(len(chunk))
        SINK_PENDING.set(0)
        SINK_LAST_SUCCESS.set(time.time())
        return await self._commit(offsets)

    async def _insert(self, rows: SinkRows, stop: asyncio.Event) -> bool:
        """Insert one chunk, retrying with back-off; False when stopped before it went in."""
        backoff_s = self.settings.streamer_sink_flush_ms / 1000
        while True:
            try:
                await self.insert(rows)
                return True
            except Exception as exc:
                SINK_FAILURES.inc()
                log.warning("ClickHouse insert of %d events failed (retrying in %.1fs): %s",
                            len(rows), backoff_s, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff_s)
                if stop.is_set():
                    return False
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)

    async def _commit(self, offsets: dict[TopicPartition, int]) -> bool:
        """Commit what was written and mirror it to Redis."""
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # rebalance: rows are in, the next owner re-writes (harmless)
            log.info("sink commit skipped (%s); the partition's next owner re-reads", exc)
            return True
        for tp, offset in offsets.items():
            self.committed[tp.partition] = offset
        self._export_lag()
        with contextlib.suppress(Exception):
            await self.publish_positions({tp.partition: o for tp, o in offsets.items()})
        return True
