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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from operator import attrgetter

import numpy as np
import numpy.typing as npt
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.clock import wall_ms
from streamer.core.sink_rows import SinkRows, rows_of
from streamer.kafka.client import client_kwargs
from streamer.ops.metrics import (
    SINK_BATCH,
    SINK_FAILURES,
    SINK_LAG,
    SINK_LAST_SUCCESS,
    SINK_PENDING,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.stream.sink")
InsertFn = Callable[[SinkRows], Awaitable[None]]
PositionsFn = Callable[[dict[int, int]], Awaitable[None]]
MAX_BACKOFF_S = 30.0
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


class ClickHouseSinkConsumer:
    """Fetch, insert (retrying with back-off), then commit; bounded by one batch in memory."""

    def __init__(
        self, settings: Settings | LiveSettings, partitions: int, insert: InsertFn,
        publish_positions: PositionsFn, engine: str | None = None,
    ) -> None:
        self.live = live_of(settings)  # batch bounds are read once per batch
        self.settings = settings = self.live.current
        self.partitions = partitions
        self.insert = insert
        self.publish_positions = publish_positions
        self.committed: dict[int, int] = {}
        self.events_per_message = 1.0  # measured on each fetch: sizes the next getmany
        self.drain_targets: dict[int, int] = {}
        s = settings
        self.consumer = AIOKafkaConsumer(
            s.kafka_events_topic,
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
        self.settings = self.live.current
        rows, offsets = await self._fetch()
        if not offsets:
            self._export_lag(caught_up=True)
            return True
        return await self._write(rows, offsets, stop)

    def _export_lag(self, caught_up: bool = False) -> None:
        """streamer_sink_lag per assigned partition: its end minus what the sink has written."""
        with contextlib.suppress(Exception):  # metadata not fetched yet: keep the last values
            for tp in self.consumer.assignment():
                high = self.consumer.highwater(tp)
                written = high if caught_up else self.committed.get(tp.partition)
                if high is not None and written is not None:
                    SINK_LAG.labels(partition=str(tp.partition)).set(max(high - written, 0))

    async def _fetch(self) -> tuple[SinkRows, dict[TopicPartition, int]]:
        """Fetch until the batch holds STREAMER_SINK_BATCH_SIZE events or _BYTES of messages,
        or STREAMER_SINK_FLUSH_MS passed; the next offset of each partition read."""
        s = self.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.streamer_sink_flush_ms / 1000
        parts: list[SinkRows] = []
        offsets: dict[TopicPartition, int] = {}
        events = nbytes = 0
        while events < s.streamer_sink_batch_size and nbytes < s.streamer_sink_batch_bytes:
            wait_ms = int((deadline - loop.time()) * 1000)
            if wait_ms <= 0 and offsets:
                break
            want = (s.streamer_sink_batch_size - events) / self.events_per_message
            batch: Fetched = await self.consumer.getmany(
                timeout_ms=max(wait_ms, 0), max_records=max(1, int(want)))
            if not batch:
                break
            rows, size = fetched_rows(batch, self.partitions, wall_ms())
            messages = sum(len(ms) for ms in batch.values())
            self.events_per_message = max(1.0, len(rows) / messages) if rows else 1.0
            parts.append(rows)
            events, nbytes = events + len(rows), nbytes + size
            offsets.update({tp: ms[-1].offset + 1 for tp, ms in batch.items() if ms})  # type: ignore[attr-defined]
        return SinkRows.concat(parts), offsets

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
