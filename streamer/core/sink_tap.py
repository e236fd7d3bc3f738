"""The tap between the stream and the ClickHouse sink: the sink takes the stream's decoded rows.

The stream decodes every batch it reads; the sink, reading the same topic in its own group,
would fetch and decode the same messages again. The tap lets the sink take the stream's rows
instead, without changing what the sink writes or commits:
- The sink keeps, per partition of its own consumer, the next offset it will write
  (`next_offsets`). The stream offers a batch of partition p covering offsets [first, last];
  the sink takes it when that next offset lies in it (the rows from it on), or is last + 1
  (the sink fetched the same messages first: level, nothing to take), and then *follows* p:
  its consumer pauses p and the stream's offers are its only source of p.
- An offer that does not cover the next offset (the stream re-reads after a rebalance, or it
  is ahead of a sink that restarted or fell behind), a full tap (ClickHouse slow or down: at
  most one batch of events and bytes waits here), a partition the stream lost or stopped
  reading, and a followed partition without an offer for `idle_ms`: each ends following;
  the sink then seeks its consumer to its own next offset and fetches again (`sync`).
- Rows the sink's consumer fetched for a followed partition, or before that seek, are
  dropped (`fetched`): the tap or the fetch after the seek brings them, once.
Pure bookkeeping (no I/O): the sink applies `sync`'s pauses and seeks to its consumer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamer.core.sink_rows import SinkRows

RowsFn = Callable[[], tuple[SinkRows, int]]  # the offered batch's rows and its message bytes


@dataclass(frozen=True, slots=True)
class Piece:
    """One taken offer: its partition, rows, next offset and message bytes."""

    partition: int
    rows: SinkRows
    end: int
    nbytes: int


@dataclass(slots=True)
class Taken:
    """Rows the sink took, waiting for its next batch."""

    pieces: list[Piece] = field(default_factory=list)
    events: int = 0
    nbytes: int = 0

    def add(self, piece: Piece) -> None:
        """One more offer's rows."""
        self.pieces.append(piece)
        self.events += len(piece.rows)
        self.nbytes += piece.nbytes


@dataclass(frozen=True, slots=True)
class Sync:
    """The sink's consumer: partitions to pause, to seek (to the offset) and resume; the rows
    taken since the last sync."""

    pause: set[int]
    seek: dict[int, int]
    taken: Taken


class SinkTap:
    """Offsets and rows handed from the stream to the sink (one per worker process)."""

    def __init__(self, max_events: int, max_bytes: int, idle_ms: int) -> None:
        self.max_events = max_events  # taken rows wait at most one sink batch
        self.max_bytes = max_bytes
        self.idle_ms = idle_ms
        self.next_offsets: dict[int, int] = {}  # sink's next offset to write, where known
        self.following: dict[int, int] = {}  # partition -> when its last offer was taken (ms)
        self.paused: set[int] = set()  # partitions the sink's consumer has paused
        self.resync: set[int] = set()  # no longer followed: seek to the next offset, resume
        self.taken = Taken()
        self.taken_events = 0  # all events ever taken (a metric)
        self.open = True  # False once the stream stops: nothing more is taken
        self.stream_ends: dict[int, int] = {}  # the stream consumer's end of each partition

    # ---- the stream's side -------------------------------------------------------
    def offer(self, partition: int, first: int, last: int, rows_of: RowsFn, now_ms: int) -> bool:
        """The stream read offsets [first, last] of a partition; True when the sink follows it
        (took the rows from its next offset on, or had just fetched up to the same offset)."""
        at = self.next_offsets.get(partition)
        if at is None or not self.open:
            return False  # not the sink's partition (yet), or the stream is stopping
        full = self.taken.events >= self.max_events or self.taken.nbytes >= self.max_bytes
        if not first <= at <= last + 1 or full:
            self._unfollow(partition)
            return False
        if at <= last:
            rows, nbytes = rows_of()
            if at > first:  # rows are in offset order: the ones from `at` on are a slice
                rows = rows.slice(int(np.searchsorted(rows.offsets, at)), len(rows))
            self.taken.add(Piece(partition, rows, last + 1, nbytes))
            self.taken_events += len(rows)
            self.next_offsets[partition] = last + 1
        self.following[partition] = now_ms
        self.resync.discard(partition)
        return True

    def release(self, partitions: set[int]) -> None:
        """The stream stopped reading these partitions: the sink fetches them itself again."""
        for partition in partitions:
            self._unfollow(partition)

    def close(self) -> None:
        """The stream stops: the sink fetches every partition itself from here on."""
        self.open = False
        self.release(set(self.following))

    # ---- the sink's side ---------------------------------------------------------
    def sync(self, now_ms: int) -> Sync:
        """What the sink's consumer must do now (partitions to pause; to seek to an offset and
        resume) and the rows taken so far, for the sink's batch (the tap has room again).
        Followed partitions without an offer for idle_ms are given back first. One call hands
        out both, so taken rows always join the batch before rows fetched after the seek."""
        for partition, since_ms in list(self.following.items()):
            if now_ms - since_ms >= self.idle_ms:
                self._unfollow(partition)
        pause = self.following.keys() - self.paused
        self.paused |= pause
        seek = {p: self.next_offsets[p] for p in self.resync}
        self.paused -= self.resync
        self.resync = set()
        taken, self.taken = self.taken, Taken()
        return Sync(pause, seek, taken)

    def fetched(self, partition: int, first: int, last: int) -> int | None:
        """The sink's consumer returned offsets [first, last]: the offset to write them from,
        or None to drop them all (the tap brings them, or the fetch after the next seek)."""
        if partition in self.following or partition in self.resync:
            return None
        at = self.next_offsets.get(partition, first)
        if at > last:
            return None
        self.next_offsets[partition] = last + 1
        return max(at, first)

    def forget(self, partitions: set[int]) -> None:
        """The sink's consumer lost or (re)starts these partitions (at its group's committed
        offsets): nothing of theirs is known or kept."""
        for partition in partitions:
            self.next_offsets.pop(partition, None)
            self.following.pop(partition, None)
            self.paused.discard(partition)
            self.resync.discard(partition)
        kept, self.taken = self.taken, Taken()
        for piece in kept.pieces:
            if piece.partition not in partitions:
                self.taken.add(piece)

    def _unfollow(self, partition: int) -> None:
        if self.following.pop(partition, None) is not None or partition in self.paused:
            self.resync.add(partition)
