"""One partition's exact state and the change records that make it durable.

The state is rebuilt from *records*: each record is one changelog message holding, for a batch
of accepted events, every event's id key, post, type and minute (streamer.core.records). Id
and counts of an event always travel in the same message, so after kill -9 a record is either
wholly in the changelog or not at all: a redelivered event is either found by its id
(duplicate, skipped) or absent together with its counts (counted again, once). Loading counts
each id once, so records that overlap (a paused owner that wrote after losing its partition,
a record sent twice) cannot count an event twice. A record is deleted (tombstoned) once every
minute it touches has left the window and the retained minutes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.core.dedup import DedupIndex, event_keys
from streamer.core.people import EVENTS, Counting, PeopleWindow, eligible_top, masked
from streamer.core.reconcile import StreamSnapshot
from streamer.core.records import (
    RecordColumns,
    concat,
    decode_record,
    encode_record,
    record_key,
    record_span,
    users_of,
)
from streamer.core.scoring import PostCounts
from streamer.core.window import MINUTE_MS, Window
from streamer.core.window_state import PartitionWindow, top_of

RETAIN_MINUTES = 3  # minutes kept after they leave the window, for reconcile partials
MAX_RECORD_EVENTS = 100_000  # ~2 MB per changelog message at most
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True, slots=True)
class Accepted:
    """How many events of an accept call ended in each outcome."""

    counted: int = 0
    pending: int = 0
    late: int = 0
    duplicate: int = 0


class PartitionState:
    """Window counters, dedup keys and live records of one source partition."""

    def __init__(self, partition: int, window_minutes: int, now_ms: int,
                 counting: Counting = EVENTS) -> None:
        self.partition = partition
        self.window = PartitionWindow(window_minutes, RETAIN_MINUTES)
        self.window.advance(now_ms)
        self.counting = counting
        self.people = PeopleWindow(RETAIN_MINUTES) if counting.tracks_people else None
        if self.people is not None:
            self.people.advance(*self.window.bounds())
        self.dedup = DedupIndex()
        self.records: dict[bytes, int] = {}  # record key -> newest minute it touches
        self.writer = secrets.token_hex(4)
        self.next_seq = 0
        self.pending: list[RecordColumns] = []  # accepted, not yet in a record
        self.next_offset = -1  # next source offset to read; -1 until a batch was processed
        self._expired_to: int | None = None  # window start of the last expiry pass

    def accept_columns(self, event_ids: list[str], post_ids: I64, types: npt.NDArray[np.uint8],
                       ts_ms: I64, user_ids: I64 | None = None,
                       slots: I32 | None = None) -> Accepted:
        """Dedup and count events that belong to this partition (one vectorised pass).

        `slots`, when given, is the window's lookup of `post_ids` made since the last advance
        (`PartitionWindow.lookup`): counting reuses it instead of looking the posts up again.
        """
        first, last = self.window.bounds()
        minutes = ts_ms // MINUTE_MS
        on_time = minutes >= first
        late = len(minutes) - int(on_time.sum())
        if late:
            keep = np.flatnonzero(on_time)
            event_ids = [event_ids[i] for i in keep.tolist()]
            post_ids, types, minutes = post_ids[keep], types[keep], minutes[keep]
            user_ids = None if user_ids is None else user_ids[keep]
            slots = None if slots is None else slots[keep]
        high, low = event_keys(event_ids)
        fresh = self.dedup.add_batch(high, low, minutes)
        accepted = int(fresh.sum())
        if accepted < len(fresh):
            high, low, post_ids = high[fresh], low[fresh], post_ids[fresh]
            types, minutes = types[fresh], minutes[fresh]
            user_ids = None if user_ids is None else user_ids[fresh]
            slots = None if slots is None else slots[fresh]
        if accepted:
            self._add(post_ids, types, minutes, user_ids, slots)
            self.pending.append(RecordColumns(high, low, post_ids, types, minutes, user_ids))
        pending = int((minutes > last).sum())
        return Accepted(accepted - pending, pending, late, len(fresh) - accepted)

    def take_records(self) -> list[tuple[bytes, bytes]]:
        """(key, value) of records holding every event accepted since the last call."""
        if not self.pending:
            return []
        cols = concat(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending = []
        out = []
        for start in range(0, len(cols), MAX_RECORD_EVENTS):
            part = slice(start, start + MAX_RECORD_EVENTS)
            piece = RecordColumns(cols.high[part], cols.low[part], cols.post_ids[part],
                                  cols.types[part], cols.minutes[part],
                                  None if cols.users is None else cols.users[part])
            key = record_key(self.partition, self.writer, self.next_seq)
            self.next_seq += 1
            self.records[key] = int(piece.minutes.max())
            out.append((key, encode_record(piece)))
        return out

    def advance(self, now_ms: int) -> list[bytes]:
        """Move the window to wall-clock now; return keys of records that fully expired."""
        first = self.window.advance(now_ms).first_minute
        if self.people is not None:
            self.people.advance(*self.window.bounds())
        if self._expired_to == first:
            return []  # same window start as the last expiry pass: nothing can have expired
        self._expired_to = first
        self.dedup.expire_before(first)
        keep_from = first - RETAIN_MINUTES  # records also back the retained minutes
        expired = [key for key, newest in self.records.items() if newest < keep_from]
        for key in expired:
            del self.records[key]
        return expired

    def load(self, records: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """Rebuild from recovered records, each event id once; return keys of expired records."""
        first, _ = self.window.bounds()
        keep_from = first - RETAIN_MINUTES
        parts: list[RecordColumns] = []
        expired: list[bytes] = []
        for key, value in records:
            newest = record_span(value)[1]
            if newest < keep_from:
                expired.append(key)
                continue
            self.records[key] = newest
            parts.append(decode_record(value))
        cols = concat(parts)
        held = np.flatnonzero(cols.minutes >= keep_from)
        minutes = cols.minutes[held]
        # dedup remembers in-window minutes only; retained ones are counted once all the same
        fresh = self.dedup.add_batch(cols.high[held], cols.low[held], minutes, minutes >= first)
        once = held[fresh]
        self._add(cols.post_ids[once], cols.types[once], cols.minutes[once], users_of(cols)[once])
        return expired

    def _add(self, post_ids: I64, types: npt.NDArray[np.uint8], minutes: I64,
             user_ids: I64 | None, known: I32 | None = None) -> None:
        """Hold deduplicated events in the window (and, counting people, their accounts)."""
        slots = self.window.add_batch(post_ids, types, minutes, known)
        if self.people is not None and user_ids is not None and len(post_ids):
            self.people.fit(len(self.window.post_of))  # grows as the window's slots do
            self.people.add_batch(slots, types, user_ids, minutes)

    def top(self, k: int) -> list[PostCounts]:
        """Top k posts of the current window (by the counting mode, above the minimum)."""
        people = self.people
        if people is None:
            return self.window.top(k)
        if self.counting.people:
            return eligible_top(lambda d: people.top(d, self.window.post_of), self._people_of, k,
                                self.counting.min_people)
        return eligible_top(self.window.top, self._people_of, k, self.counting.min_people)

    def _people_of(self, post_ids: list[int]) -> list[int]:
        """Distinct accounts (any type) of each post in the window."""
        assert self.people is not None
        self.people.fit(len(self.window.post_of))
        slots = self.window.slot_of.lookup(np.array(post_ids, dtype=np.int64)).tolist()
        return [int(self.people.anyone[s]) if s >= 0 else 0 for s in slots]

    def can_compute(self, window: Window) -> bool:
        """True when every minute of `window` is still held (in the window or retained)."""
        first, last = self.window.bounds()
        return window.first_minute >= first - RETAIN_MINUTES and window.last_minute <= last

    def complete_partial(self, window: Window, k: int) -> StreamSnapshot:
        """This partition's snapshot over a past complete-minute window (held minutes): its
        exact top-k, event total and next source offset."""
        lo, hi = window.first_minute, window.last_minute
        totals = self.window.totals_over(lo, hi)
        events = int(totals.sum())
        if self.people is not None:
            counts, anyone = self.people.counts_over(lo, hi, len(self.window.post_of))
            ranked = counts if self.counting.people else totals
            totals = masked(ranked, anyone, self.counting.min_people)
        top = top_of(self.window.post_of, totals, k)
        return StreamSnapshot(window, top, events, [self.partition], [], k, [self.next_offset])
