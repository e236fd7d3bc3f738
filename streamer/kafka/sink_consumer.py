"""ClickHouse sink as its own consumer group: at-least-once into post_events, never lost.

It reads the events topic independently of the stream (group `{app_id}-clickhouse-sink`),
writes each valid event that sits in its post's partition with its Kafka position, and commits
offsets only after ClickHouse accepted the rows. A crash or a ClickHouse outage therefore
re-reads instead of losing; repeats are harmless because every query counts an event_id once.
Misrouted events are skipped here: their forwarded copy is written from the right partition.
The committed positions are mirrored to Redis so reconciliation can wait for the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamer.clock import wall_ms
from streamer.core.events import Event, decode_batch
from streamer.core.partitioning import partitions_of
from streamer.kafka.client import client_kwargs
from streamer.ops.metrics import SINK_BATCH, SINK_FAILURES, SINK_PENDING
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.stream.sink")
InsertFn = Callable[[Sequence[Event], Sequence[tuple[int, int]]], Awaitable[None]]
PositionsFn = Callable[[dict[int, int]], Awaitable[None]]
MAX_BACKOFF_S = 30.0
DRAIN_S = 15.0  # on a clean stop, how long the sink may keep catching up with the stream


def sink_group(settings: Settings) -> str:
    """Consumer group of the sink (separate from the stream's)."""
    return f"{settings.streamer_app_id}-clickhouse-sink"


def rows_of(
    messages: Sequence[tuple[int, int, bytes | None]], partitions: int, now_ms: int
) -> tuple[list[Event], list[tuple[int, int]]]:
    """Valid events of (partition, offset, value) messages that belong to that partition."""
    cols, _ = decode_batch([value for _, _, value in messages], now_ms)
    source = np.array([(p, o) for p, o, _ in messages], dtype=np.int64).reshape(-1, 2)
    where = source[cols.message]
    own = np.flatnonzero(partitions_of(cols.post_ids, partitions) == where[:, 0])
    positions = [(p, o) for p, o in where[own].tolist()]
    return cols.take(own).events(), positions


class ClickHouseSinkConsumer:
    """Fetch, insert (retrying with back-off), then commit; bounded by one batch in memory."""

    def __init__(
        self, settings: Settings | LiveSettings, partitions: int, insert: InsertFn,
        publish_positions: PositionsFn,
    ) -> None:
        self.live = live_of(settings)  # batch bounds are read once per batch
        self.settings = settings = self.live.current
        self.partitions = partitions
        self.insert = insert
        self.publish_positions = publish_positions
        self.committed: dict[int, int] = {}
        self.drain_targets: dict[int, int] = {}
        s = settings
        self.consumer = AIOKafkaConsumer(
            s.kafka_events_topic,
            bootstrap_servers=s.kafka_bootstrap_servers,
            group_id=sink_group(s),
            client_id=f"{s.streamer_app_id}-sink",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            rebalance_timeout_ms=s.streamer_rebalance_timeout_sec * 1000,
            session_timeout_ms=s.streamer_session_timeout_sec * 1000,
            heartbeat_interval_ms=s.streamer_heartbeat_interval_sec * 1000,
            max_poll_interval_ms=max(300_000, s.streamer_rebalance_timeout_sec * 1000),
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
        batch = await self.consumer.getmany(
            timeout_ms=self.settings.streamer_sink_flush_ms,
            max_records=self.settings.streamer_sink_batch_size,
        )
        return not batch or await self._write(batch, stop)

    def _behind(self) -> bool:
        """True while an assigned partition's written offset is below its drain target."""
        if not self.drain_targets:
            return False
        assigned = {tp.partition for tp in self.consumer.assignment()}
        if not assigned:
            return True  # still joining: the bounded drain waits for it
        return any(self.committed.get(p, 0) < self.drain_targets.get(p, 0) for p in assigned)

    async def _write(self, batch: dict[TopicPartition, list[object]], stop: asyncio.Event) -> bool:
        """Insert then commit one fetched batch; False when stopped before it was written."""
        flat = [(tp.partition, m.offset, m.value) for tp, ms in batch.items() for m in ms]  # type: ignore[attr-defined]
        events, positions = rows_of(flat, self.partitions, wall_ms())
        SINK_PENDING.set(len(events))
        backoff_s = self.settings.streamer_sink_flush_ms / 1000
        while True:
            try:
                if events:
                    await self.insert(events, positions)
                break
            except Exception as exc:
                SINK_FAILURES.inc()
                log.warning("ClickHouse insert of %d events failed (retrying in %.1fs): %s",
                            len(events), backoff_s, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff_s)
                if stop.is_set():
                    return False  # not committed: read again after restart
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
        SINK_BATCH.observe(len(events))
        SINK_PENDING.set(0)
        offsets = {tp: ms[-1].offset + 1 for tp, ms in batch.items() if ms}  # type: ignore[attr-defined]
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # rebalance: rows are in, the next owner re-writes (harmless)
            log.info("sink commit skipped (%s); the partition's next owner re-reads", exc)
            return True
        for tp, offset in offsets.items():
            self.committed[tp.partition] = offset
        with contextlib.suppress(Exception):
            await self.publish_positions({tp.partition: o for tp, o in offsets.items()})
        return True
