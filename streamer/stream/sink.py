"""ClickHouse sink: accepted events inserted in batches, retried, never blocking the stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from streamer.core.events import Event
from streamer.ops.metrics import SINK_BATCH, SINK_DROPPED, SINK_FAILURES, SINK_PENDING

log = logging.getLogger("streamer.stream.sink")
InsertFn = Callable[[Sequence[Event]], Awaitable[None]]
MAX_BACKOFF_S = 30.0


class EventSink:
    """Bounded buffer flushed every `flush_ms` or `batch_size` events; oldest dropped when full."""

    def __init__(self, insert: InsertFn, batch_size: int, flush_ms: int, max_pending: int) -> None:
        self.insert = insert
        self.batch_size = batch_size
        self.flush_s = flush_ms / 1000
        self.max_pending = max(max_pending, batch_size)
        self._buffer: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self.dropped = 0

    def add(self, events: Sequence[Event]) -> None:
        """Queue events; if the buffer is full the oldest are dropped (counted), not blocked on."""
        self._buffer.extend(events)
        overflow = len(self._buffer) - self.max_pending
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self.dropped += overflow
            SINK_DROPPED.inc(overflow)
        SINK_PENDING.set(len(self._buffer))
        if len(self._buffer) >= self.batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Events not yet written."""
        return len(self._buffer)

    async def run(self) -> None:
        """Flush loop until stop(); failures back off exponentially and keep the batch."""
        backoff = self.flush_s
        while not self._stopping or self._buffer:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            if await self.flush_once():
                backoff = self.flush_s
                continue
            if self._stopping:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def flush_once(self) -> bool:
        """Insert up to batch_size buffered events; False when the insert failed."""
        batch = [self._buffer.popleft() for _ in range(min(self.batch_size, len(self._buffer)))]
        if not batch:
            return True
        started = time.perf_counter()
        try:
            await self.insert(batch)
        except Exception as exc:
            SINK_FAILURES.inc()
            log.warning("ClickHouse insert of %d events failed (will retry): %s", len(batch), exc)
            self._buffer.extendleft(reversed(batch))
            self.add([])
            return False
        SINK_BATCH.observe(len(batch))
        SINK_PENDING.set(len(self._buffer))
        log.debug("inserted %d events in %.3fs", len(batch), time.perf_counter() - started)
        if self._buffer:
            self._wake.set()
        return True

    def stop(self) -> None:
        """Flush what is left (one attempt per batch) and end the loop."""
        self._stopping = True
        self._wake.set()
