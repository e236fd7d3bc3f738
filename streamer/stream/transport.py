"""Faust transport override: a leaner fetch loop that hands whole batches to a handler.

Tested with faust-streaming 0.15.3 (`faust_compat.SUPPORTED_FAUST`). Faust's stock
`Consumer._drain_messages` awaits `wait_first(callback(message), suspend_flow.wait())` for
every message, which creates tasks per message and caps a worker at ~4k messages/s. This
module subclasses the aiokafka driver's Consumer (and its consumer thread, for a shorter idle
fetch wait while a rebalance settles: FetchWait) and Transport and registers them under the
URL scheme `streamer-kafka://`, the extension point Faust's driver registry offers
(`faust.transport.drivers.TRANSPORTS`). Nothing installed is patched, and every private
Faust member the loop needs is reached through `stream/faust_compat.py`, checked at start.

Topics with a registered batch handler (`register_batch_handler`) get each fetched batch per
partition in one call, as aiokafka's records; the handler owns acking (by offsets,
`LeanConsumer.ack_offsets`) and returns False when it did not consume the batch (its partition
is not ready), so those offsets stay unread. Fetch rounds hold about ROUND_BYTES of messages:
each round wakes the worker's loop from Faust's consumer thread, so small messages come in
rounds of thousands. Every other topic (table
changelogs during recovery) goes through Faust's own per-message callback, awaited directly.

No fetched record is ever dropped: one that is not delivered (partition paused, flow stopped,
a rebalance or seek since the fetch) is fetched again, either because a newer seek already
moved the partition back or by seeking back to it; and partitions without a committed offset
restart from the beginning on `seek_to_committed` (aiokafka leaves them where they are).
Faust's own `getmany` loses such records, which made takeovers undercount (RELIABILITY.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from aiokafka import TopicPartition
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from streamer.stream import faust_compat as compat

compat.check_faust()  # before anything uses the members below: an untested Faust stops here, in one line
SCHEME = "streamer-kafka"

class Record(Protocol):
    """What a handler gets per fetched message: aiokafka's record, not a Faust Message."""

    offset: int
    value: bytes | None


BatchHandler = Callable[[TP, list[Record]], Awaitable[bool]]  # False: not consumed, re-read
_HANDLERS_ATTR = "_streamer_batch_handlers"


def register_batch_handler(app: Any, topic: str, handler: BatchHandler) -> None:
    """Route every fetched message of `topic` to `handler` in per-partition batches."""
    handlers: dict[str, BatchHandler] = getattr(app, _HANDLERS_ATTR, None) or {}
    handlers[topic] = handler
    setattr(app, _HANDLERS_ATTR, handlers)


def broker_url(bootstrap_servers: str) -> list[str]:
    """Faust broker URLs that select this transport."""
    return [f"{SCHEME}://{host.strip()}" for host in bootstrap_servers.split(",")]


# How long the broker may hold a fetch that finds no new data. Steady: Faust's 1500 ms, so a
# worker below its capacity reads rounds of up to that long (on tansu a fetch without data is
# answered after about half its wait even when data arrives meanwhile; each round costs two
# cross-thread wake-ups, a handler call and a changelog record per partition: rounds of tens of
# ms doubled the CPU per event at 30,000 events/s). From each assignment until SETTLE_S after
# its recovery completed: SETTLE_FETCH_WAIT_MS. A consumer sends every request to a broker over
# one connection, answered in order, so each offset lookup of a rebalance (changelog
# highwaters and start offsets, the stream partitions' start) waits behind an idle fetch in
# flight: up to 3 x 1.5 s before a worker with empty or caught-up changelogs counted.
FETCH_MAX_WAIT_MS = 1500
SETTLE_FETCH_WAIT_MS = 100
SETTLE_S = 5.0  # after a recovery completed, the short wait stays this long ...
SETTLE_MAX_S = 120.0  # ... and never longer than this after an assignment


class FetchWait:
    """The stream consumer's fetch wait: short while a rebalance settles, long otherwise."""

    def __init__(self, apply: Callable[[int], None]) -> None:
        self.apply = apply  # sets the wait (ms) on the aiokafka consumer
        self.wait_ms = SETTLE_FETCH_WAIT_MS  # a new consumer starts with a first assignment
        self.timer: asyncio.TimerHandle | None = None  # the pending restore (one at a time)

    def settling(self) -> None:
        """An assignment arrived: its lookups must not queue behind long idle fetches."""
        self._set(SETTLE_FETCH_WAIT_MS)
        self._restore_after(SETTLE_MAX_S)

    def settled(self) -> None:
        """The assignment's recovery completed: the long wait again shortly after."""
        self._restore_after(SETTLE_S)

    def _restore_after(self, delay_s: float) -> None:
        """Replaces any pending restore: one scheduled for an earlier assignment never fires."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(delay_s, self._set, FETCH_MAX_WAIT_MS)

    def _set(self, wait_ms: int) -> None:
        if wait_ms != self.wait_ms:
            self.wait_ms = wait_ms
            self.apply(wait_ms)


ROUND_BYTES = 1024 * 1024  # a fetch round holds about this much message data ...
ROUND_RECORDS_MAX = 8192  # ... and at most this many records (small messages)


def round_records(records: Mapping[TP, list[Any]]) -> int:
    """Records to ask of the next round: about ROUND_BYTES of messages the size of these. Rounds
    of 100-event arrays stay at broker_max_poll_records; one-event messages get rounds of
    thousands, so the per-round costs are shared by ~10x more events."""
    count = nbytes = 0
    for raw in records.values():
        count += len(raw)
        nbytes += sum(len(record.value or b"") for record in raw)
    return 0 if not count else min(ROUND_RECORDS_MAX, ROUND_BYTES * count // max(nbytes, 1))


class LeanConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's consumer thread whose aiokafka consumer fetches with the wait of `FetchWait`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.fetch_consumer: Any = None  # the worker's aiokafka consumer, once built
        super().__init__(*args, **kwargs)

    def _create_worker_consumer(self, transport: Any) -> Any:
        """Faust's worker consumer, its idle fetches held SETTLE_FETCH_WAIT_MS at first."""
        consumer = super()._create_worker_consumer(transport)
        compat.set_fetch_max_wait(consumer, SETTLE_FETCH_WAIT_MS)
        self.fetch_consumer = consumer
        return consumer

    def set_fetch_wait(self, wait_ms: int) -> None:
        """Applies to the next fetch request the consumer builds (an int read per request)."""
        if self.fetch_consumer is not None:
            compat.set_fetch_max_wait(self.fetch_consumer, wait_ms)


class LeanConsumer(faust_aiokafka.Consumer):
    """aiokafka Consumer whose fetch loop delivers batches instead of one task per message."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._rebalances = 0  # rebalances and seeks so far: a fetched batch is used only if unchanged
        self._round_records = 0  # records asked of the next fetch round (0: broker_max_poll_records)
        super().__init__(*args, **kwargs)
        self.fetch_wait = FetchWait(self._apply_fetch_wait)
        compat.check_consumer(self)  # a changed Faust fails here, not mid-rebalance

    def _new_consumer_thread(self) -> LeanConsumerThread:
        """The thread that owns the aiokafka consumer: ours, for its fetch wait."""
        return LeanConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Mapping[TP, list[Any]]:  # noqa: ASYNC109 - Faust's signature
        """One fetch round from the consumer thread, of `round_records(...)` records: each round
        costs two cross-thread wake-ups, a handler call and a changelog record per partition."""
        floor = int(self.app.conf.broker_max_poll_records or 1)
        return await compat.fetch_records(self, active_partitions, timeout,
                                          max(self._round_records, floor))

    async def _drain_messages(self, fetcher: Any) -> None:
        """Fetch, group by partition, hand batches over; same stop/commit rules as Faust's."""
        consumer_should_stop = compat.stop_requested(self)
        fetcher_should_stop = compat.stop_requested(fetcher)
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag("FET")
                await self._drain_once()
                self.diag.unset_flag("FET")
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise

    def ack_offsets(self, tp: TP, offsets: list[int]) -> None:
        """Ack a handled batch by its offsets: Faust's `ack` bookkeeping, once per batch."""
        compat.ack_offsets(self, tp, offsets)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """Count rebalances: batches fetched before one are discarded, never half-used."""
        self._rebalances += 1
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        """See on_partitions_revoked; fetches are held briefly until the assignment settled."""
        self._rebalances += 1
        self.fetch_wait.settling()
        await super().on_partitions_assigned(assigned, generation_id)

    def _apply_fetch_wait(self, wait_ms: int) -> None:
        thread = compat.consumer_thread(self)
        if isinstance(thread, LeanConsumerThread):
            thread.set_fetch_wait(wait_ms)

    async def perform_seek(self) -> None:
        """A seek to the committed offsets also invalidates batches fetched before it: one
        handled after the seek would set a read offset past messages that are never read."""
        self._rebalances += 1
        try:
            await super().perform_seek()
        finally:
            self._rebalances += 1

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Also rewind partitions of handled topics that have no committed offset.

        aiokafka's `seek_to_committed` leaves such a partition where it is, and Faust relies on
        that seek to re-read records it fetched but did not deliver (during recovery or a
        rebalance): without a commit those records were skipped for good."""
        thread = compat.consumer_thread(self)
        committed: Mapping[TP, int] = await thread.seek_to_committed()  # as Faust does
        handled = getattr(self.app, _HANDLERS_ATTR, None) or {}
        fresh = [TopicPartition(tp.topic, tp.partition) for tp, offset in committed.items()
                 if tp.topic in handled and not (offset and offset > 0)]
        if fresh:
            self.log.info("no committed offset for %s: reading from the beginning",
                          ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))
            await thread.seek_to_beginning(*fresh)
        return committed

    async def _drain_once(self) -> None:
        """One fetch round: deliver every fetched record or fetch it again, never drop it.

        Faust's own `getmany` silently drops records of partitions that are paused or whose
        flow stopped mid-iteration; their position has already moved past them."""
        epoch = self._rebalances
        records, active = await compat.wait_next_records(self, 1.0)
        generation = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        self._round_records = round_records(records)
        unread: dict[TP, int] = {}
        batches: dict[TP, list[Record]] = {}
        last: dict[TP, int] = {}
        for tp, raw in records.items():
            if raw:
                await self._route(tp, raw, active, generation, batches, unread, last)
        await self._run_handlers(batches, epoch, unread)
        if unread and not self.should_stop:
            await self._seek_back(unread)
        await self._maybe_commit_every()

    def _deliverable(self, tp: TP, active: set[TP] | None, generation: int) -> bool:
        return (self.flow_active and self.app.consumer_generation_id == generation
                and (active is None or tp in active or tp in compat.buffered_partitions(self)))

    async def _route(self, tp: TP, raw: list[Any], active: set[TP] | None, generation: int,
                     batches: dict[TP, list[Record]], unread: dict[TP, int],
                     last: dict[TP, int]) -> None:
        """Batch a handled topic's records; hand others to Faust's callback one by one (a
        callback can stop the flow, so deliverability is checked again before each)."""
        if tp.topic in (getattr(self.app, _HANDLERS_ATTR, None) or {}):
            if not self._deliverable(tp, active, generation):
                unread[tp] = raw[0].offset
                return
            # No gaps are recorded on a handled topic, so offsets already read are all to drop.
            r_offset = compat.read_offsets(self)[tp]
            kept = raw if r_offset is None or raw[0].offset >= r_offset else [
                record for record in raw if record.offset >= r_offset]
            if kept:
                batches[tp] = kept  # acked by offset (`ack_offsets`): no Faust Message each
            return
        for record in raw:
            if not self._deliverable(tp, active, generation):
                unread[tp] = record.offset
                return
            message = compat.to_message(self, tp, record)
            if await self._accept_offset(tp, message, last):
                await self.callback(message)
                compat.read_offsets(self)[tp] = message.offset

    async def _run_handlers(self, batches: dict[TP, list[Record]], epoch: int,
                            unread: dict[TP, int]) -> None:
        handlers: dict[str, BatchHandler] = getattr(self.app, _HANDLERS_ATTR, None) or {}
        for tp, messages in batches.items():
            # A rebalance or seek since the fetch: do not use the batch, fetch it again.
            if not self.flow_active or self._rebalances != epoch:
                unread[tp] = messages[0].offset
                continue
            consumed = await handlers[tp.topic](tp, messages)
            if consumed and self._rebalances == epoch:
                compat.read_offsets(self)[tp] = messages[-1].offset
            else:
                unread[tp] = messages[0].offset

    async def _seek_back(self, unread: dict[TP, int]) -> None:
        """Fetched but unused messages must be fetched again, or they leave a hole in the
        partition that nothing ever reads. Seek each partition back to its first unused offset
        unless a rebalance or seek since the fetch already put it at or before that offset
        (a partition no longer assigned is skipped: its next owner starts at the commit)."""
        for tp, offset in unread.items():
            if tp not in self.assignment():
                continue
            try:
                position = await self.position(tp)
                if position is None or position > offset:
                    await self.seek(tp, offset)
            except Exception as exc:
                self.log.warning("seek back of %r to %d failed: %r", tp, offset, exc)

    async def _accept_offset(self, tp: TP, message: Message, last: dict[TP, int]) -> bool:
        """Drop messages already read (re-fetch after seek); record gaps like Faust does."""
        r_offset = last.get(tp, compat.read_offsets(self)[tp])
        offset = message.offset
        if r_offset is not None and offset < r_offset:
            return False
        handled = tp.topic in (getattr(self.app, _HANDLERS_ATTR, None) or {})
        if (not handled and r_offset and offset - r_offset > 1
                and self.app.topics.acks_enabled_for(message.topic)):
            # A gap counts as acked in Faust; on our topic a gap can only be an unread
            # hole, so it is never recorded there (commits must wait for real acks).
            await compat.add_gap(self, tp, r_offset + 1, offset)
        last[tp] = offset
        return True

    async def _maybe_commit_every(self) -> None:
        if compat.take_commit_due(self):
            await self.commit()


class LeanTransport(faust_aiokafka.Transport):
    """The aiokafka transport with LeanConsumer."""

    Consumer = LeanConsumer


def register_transport() -> None:
    """Make `streamer-kafka://` resolve to LeanTransport (idempotent)."""
    TRANSPORTS.aliases[SCHEME] = f"{__name__}:LeanTransport"
