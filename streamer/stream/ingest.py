"""Batch handler of the events topic: one pure call per batch, then send, wait and ack.

The ack/commit protocol, written once here, in the module that runs it (at-least-once
delivery + dedup by id = exact counts across kill -9). `modes.worker` only wires it: the
producer's `send_many`, the consumer's `ack`, the rebalance signals.
1. The lean transport (`stream.transport`) hands `handle_batch` one partition's fetched
   records. A partition without a state here (not ours, or still RECOVERING) returns
   False: nothing is acked, the messages are read again.
2. `core.batch.process_batch` (pure) decodes, routes, dedups and counts, and returns the
   effects: tombstones of expired records, the new record (every accepted event's id and its
   counts travel in one changelog record), dead letters and forwards.
3. Every effect is sent: records and tombstones to the table and its changelog, dead letters
   and forwards through the producer, in order.
4. Only when all of those sends are acknowledged by the broker are the batch's offsets
   acked, in offset order per partition (Faust commits past gaps in acks), so Faust never
   commits an offset whose effects could be lost. At most MAX_IN_FLIGHT batches wait.
5. A failed send is fatal: the next batch raises it and the worker stops, to stay exact.
6. On revoke, every pending send and ack is drained before the partitions' states go; on
   assignment a partition counts only once the table's recovery rebuilt its state from its
   records (`PartitionPhase`).
A crash anywhere re-delivers from the committed offset; ids in durable records make the
re-delivered events duplicates, events of lost records are counted afresh.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import Any

import numpy as np
from faust.types import TP

from streamer.clock import wall_ms
from streamer.core.batch import BatchResult, Forward, process_batch
from streamer.core.events import Columns, DeadLetter
from streamer.core.partition_state import PartitionState
from streamer.core.people import EVENTS, Counting
from streamer.core.sink_rows import SinkRows, rows_of_columns
from streamer.core.sink_tap import SinkTap
from streamer.ops.metrics import (
    ACTIVE_POSTS,
    CHANGELOG_RECORDS,
    EVENTS_DUPLICATE,
    EVENTS_FORWARDED,
    EVENTS_INVALID,
    EVENTS_LATE,
    EVENTS_PROCESSED,
    PARTITIONS_OWNED,
    RECOVERY_PROGRESS,
)
from streamer.stream.app import TableWriter
from streamer.stream.transport import Record

log = logging.getLogger("streamer.stream.ingest")
MAX_IN_FLIGHT = 16
Outgoing = tuple[str, bytes | None, bytes, int | None, list[tuple[str, bytes]] | None]
SendMany = Callable[[list[Outgoing]], Awaitable[None]]  # sends in order, returns when all landed
AckOffsets = Callable[[TP, list[int]], Any]  # Faust's ack of these offsets of one partition


class PartitionPhase(Enum):
    """Where one partition of this worker stands; only the rebalance callbacks move it."""

    RECOVERING = "recovering"  # assigned to us; Faust restores the table, no state yet
    LIVE = "live"  # state rebuilt from its records: batches are processed and acked
    REVOKED = "revoked"  # taken away: pending sends and acks drain, then the state goes


class Ingestor:
    """Owns the PartitionState of every partition this worker holds."""

    def __init__(
        self,
        writer: TableWriter,
        send_many: SendMany,
        ack: AckOffsets,
        partitions: int,
        window_minutes: int,
        events_topic: str,
        dlq_topic: str,
        counting: Counting = EVENTS,
    ) -> None:
        self.writer = writer
        self.send_many = send_many
        self.ack = ack
        self.partitions = partitions
        self.window_minutes = window_minutes
        self.events_topic = events_topic
        self.dlq_topic = dlq_topic
        self.counting = counting  # JOB_TRENDING_COUNT / _MIN_PEOPLE (restart-only)
        self.states: dict[int, PartitionState] = {}
        self.phases: dict[int, PartitionPhase] = {}  # every partition assigned to us
        self.recovered_once = False
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._tails: dict[int, asyncio.Future[Any]] = {}
        self.fatal: BaseException | None = None
        self.tap: SinkTap | None = None  # the worker's ClickHouse sink takes decoded rows here

    # ---- rebalance -----------------------------------------------------------------
    def on_assigned(self, partitions: set[int]) -> None:
        """New assignment: state must be rebuilt before the partitions count as ready."""
        self.phases = {p: PartitionPhase.LIVE if p in self.states else PartitionPhase.RECOVERING
                       for p in partitions}
        RECOVERY_PROGRESS.set(0 if partitions else 1)

    async def on_revoked(self, partitions: set[int]) -> None:
        """Partitions leave: wait for in-flight writes, then drop their state."""
        for partition in partitions & self.phases.keys():
            self.phases[partition] = PartitionPhase.REVOKED
        if self.tap is not None:
            self.tap.release(partitions)
        await self.drain()
        for partition in partitions:
            self.states.pop(partition, None)
            self._tails.pop(partition, None)
            self.phases.pop(partition, None)
        self._update_gauges()

    async def on_recovered(self, partitions: set[int]) -> None:
        """Faust recovered the table: rebuild each assigned partition from its records."""
        now = wall_ms()
        for partition in sorted(partitions):
            if partition in self.states:
                continue
            state = PartitionState(partition, self.window_minutes, now, self.counting)
            expired = state.load(self.writer.records(partition))
            for key in expired:
                self._track(self.writer.put(partition, key, None))
            self.states[partition] = state
            log.info("partition %d recovered: %d records, %d posts, %d ids", partition,
                     len(state.records), len(state.window), len(state.dedup))
        self.phases.update(dict.fromkeys(partitions, PartitionPhase.LIVE))
        self.recovered_once = True
        RECOVERY_PROGRESS.set(1)
        self._update_gauges()

    @property
    def ready(self) -> bool:
        """Every assigned partition has its state (none is still recovering)."""
        return self.recovered_once and PartitionPhase.RECOVERING not in self.phases.values()

    # ---- processing ----------------------------------------------------------------
    async def handle_batch(self, tp: TP, messages: list[Record]) -> bool:
        """Process one partition's fetched records (called by the lean transport)."""
        if self.fatal is not None:
            raise self.fatal
        state = self.states.get(tp.partition)
        if state is None:
            return False  # not ours (anymore) or not recovered yet: not acked, read again
        values = [m.value for m in messages]
        now_ms = wall_ms()
        result = process_batch(state, values, now_ms, self.partitions)
        partition = tp.partition
        offsets = [m.offset for m in messages]
        if self.tap is not None and offsets and result.own is not None:
            self._offer(partition, offsets, values, result.own, now_ms)
        futures: list[Awaitable[Any]] = [self.writer.put(partition, k, None) for k in result.expired]
        futures.extend(self.writer.put(partition, k, v) for k, v in result.records)
        CHANGELOG_RECORDS.inc(len(result.records))
        outgoing = [self._dead_letter(d) for d in result.dead]
        outgoing.extend(self._forward(f) for f in result.forwards)
        if offsets:
            state.next_offset = offsets[-1] + 1
        if outgoing:
            futures.append(self.send_many(outgoing))
        self._count(result)
        await self._ack_when_done(futures, tp, offsets)
        return True

    def _offer(self, partition: int, offsets: list[int], values: list[bytes | None],
               own: Columns, now_ms: int) -> None:
        """Offer the batch's sink rows to the tap; they are built only if the sink takes them."""
        assert self.tap is not None

        def rows() -> tuple[SinkRows, int]:
            message_offsets = np.array(offsets, dtype=np.int64)
            return rows_of_columns(own, partition, message_offsets), sum(map(len, filter(None, values)))

        self.tap.offer(partition, offsets[0], offsets[-1], rows, now_ms)

    def _count(self, result: BatchResult) -> None:
        """Metrics once per batch, not per event."""
        got = result.accepted
        EVENTS_DUPLICATE.inc(got.duplicate)
        EVENTS_LATE.inc(got.late)
        EVENTS_PROCESSED.inc(got.counted + got.pending)
        EVENTS_FORWARDED.inc(len(result.forwards))

    def _dead_letter(self, dead: DeadLetter) -> Outgoing:
        EVENTS_INVALID.labels(reason=dead.reason).inc()
        return (self.dlq_topic, None, dead.payload, None, [("error", dead.header.encode())])

    def _forward(self, forward: Forward) -> Outgoing:
        return (self.events_topic, forward.key, forward.value, forward.partition, None)

    # ---- acks ----------------------------------------------------------------------
    async def _ack_when_done(self, futures: list[Awaitable[Any]], tp: TP, offsets: list[int]) -> None:
        """Ack the offsets once all sends landed; bounded number of batches in flight."""
        sends = [asyncio.ensure_future(f) for f in futures]
        previous = self._tails.get(tp.partition) if offsets else None

        async def finish() -> None:
            if sends:
                await asyncio.gather(*sends)
            if previous is not None:
                await previous  # Faust commits past gaps in acks: ack in offset order
            if offsets:
                self.ack(tp, offsets)

        task = asyncio.ensure_future(finish())
        if offsets:
            self._tails[tp.partition] = task
        self._track(task)
        while len(self._in_flight) > MAX_IN_FLIGHT:
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
        if self.fatal is not None:
            raise self.fatal

    def _track(self, aw: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(aw)
        self._in_flight.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._in_flight.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self.fatal is None:
            self.fatal = exc
            log.critical("a state/forward/dead-letter send failed; stopping to stay exact: %r", exc)

    async def drain(self) -> None:
        """Wait until every pending send and ack is done."""
        while self._in_flight:
            await asyncio.wait(set(self._in_flight))

    # ---- periodic ------------------------------------------------------------------
    def advance_all(self, now_ms: int) -> None:
        """Advance every partition to wall clock (exact expiry), tombstoning old records."""
        for partition, state in self.states.items():
            for key in state.advance(now_ms):
                self._track(self.writer.put(partition, key, None))
        self._update_gauges()

    def _update_gauges(self) -> None:
        PARTITIONS_OWNED.set(len(self.states))
        ACTIVE_POSTS.set(sum(len(s.window) for s in self.states.values()))
