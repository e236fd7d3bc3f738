"""One partition's exact state and the change records that make it durable.

The state is rebuilt from *records*: each record is one changelog message holding, for a batch
of accepted events, every event's id, post and type, by minute. Id and counts of an event
always travel in the same message, so after kill -9 a record is either wholly in the changelog
or not at all: a redelivered event is either found by its id (duplicate, skipped) or absent
together with its counts (counted again, once). Loading counts each id once, so records that
overlap (a paused owner that wrote after losing its partition, a record sent twice) cannot
count an event twice. A record is deleted (tombstoned) once every minute it touches has left
the window.
"""

from __future__ import annotations

import heapq
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

import orjson

from streamer.core.dedup import DedupIndex
from streamer.core.events import Event
from streamer.core.scoring import PostCounts
from streamer.core.window import MINUTE_MS, Window, window_at
from streamer.core.window_state import PartitionWindow

RETAIN_MINUTES = 3  # minutes kept after they leave the window, for reconcile partials


class Outcome(Enum):
    """What happened to one valid event of this partition."""

    COUNTED = "counted"
    PENDING = "pending"  # valid future ts: counted once its minute opens
    LATE = "late"
    DUPLICATE = "duplicate"


def record_key(partition: int, writer: str, seq: int) -> bytes:
    """Table key of a record: partition first (found by prefix), then a per-incarnation writer
    id so two owners of a partition (e.g. a zombie during a rebalance) never overwrite each other."""
    return b"%d:%s:%012d" % (partition, writer.encode(), seq)


def parse_record_key(key: bytes) -> int:
    """Partition of a record key."""
    return int(key.split(b":", 1)[0])


TYPE_CHARS = "0123"  # type index as one character of the record's per-minute type string


@dataclass
class RecordBuilder:
    """Accumulates one record: per minute, parallel lists of ids, posts and type indexes."""

    ids: dict[int, list[str]] = field(default_factory=dict)
    posts: dict[int, list[int]] = field(default_factory=dict)
    types: dict[int, list[str]] = field(default_factory=dict)
    events: int = 0

    def add(self, event: Event, minute: int) -> None:
        """Remember an accepted event."""
        ids = self.ids.get(minute)
        if ids is None:
            ids = self.ids[minute] = []
            self.posts[minute] = []
            self.types[minute] = []
        ids.append(event.event_id)
        self.posts[minute].append(event.post_id)
        self.types[minute].append(TYPE_CHARS[event.type_index])
        self.events += 1

    def encode(self) -> tuple[bytes, int]:
        """(JSON value, newest minute touched)."""
        value = orjson.dumps({
            "ids": {str(m): i for m, i in self.ids.items()},
            "p": {str(m): p for m, p in self.posts.items()},
            "t": {str(m): "".join(t) for m, t in self.types.items()},
        })
        return value, max(self.ids)


@dataclass(frozen=True, slots=True)
class CompletePartial:
    """Top posts and event total of one partition over a complete-minute window."""

    window: Window
    top: list[PostCounts]
    total_events: int


class PartitionState:
    """Window counters, dedup ids and live records of one source partition."""

    def __init__(self, partition: int, window_minutes: int, now_ms: int) -> None:
        self.partition = partition
        self.window = PartitionWindow(window_minutes)
        self.window.advance(now_ms)
        self.dedup = DedupIndex()
        self.records: dict[bytes, int] = {}  # record key -> newest minute it touches
        self.writer = secrets.token_hex(4)
        self.next_seq = 0
        self.pending = RecordBuilder()
        self.retained: dict[int, dict[int, list[int]]] = {}  # left-the-window minute -> buckets
        self._unapplied: dict[tuple[int, int, int], int] = {}
        self.next_offset = -1  # next source offset to read; -1 until a batch was processed

    def _first(self) -> int:
        first = self.window.first_minute
        if first is None:
            raise RuntimeError("window not advanced")
        return first

    def accept(self, event: Event) -> Outcome:
        """Dedup and count one event that belongs to this partition."""
        minute = event.ts_ms // MINUTE_MS
        if minute < self._first():
            return Outcome.LATE
        if not self.dedup.add(event.event_id, minute):
            return Outcome.DUPLICATE
        key = (event.post_id, event.type_index, minute)
        self._unapplied[key] = self._unapplied.get(key, 0) + 1
        self.pending.add(event, minute)
        return Outcome.PENDING if minute > (self.window.last_minute or 0) else Outcome.COUNTED

    def apply(self) -> None:
        """Fold accepted events into the window: one top-K update per (post, type, minute)."""
        add = self.window.add
        for (post_id, type_index, minute), count in self._unapplied.items():
            add(post_id, type_index, minute * MINUTE_MS, count)
        self._unapplied.clear()

    def take_record(self) -> tuple[bytes, bytes] | None:
        """(key, value) of the accumulated record, or None when nothing was accepted."""
        self.apply()
        if not self.pending.events:
            return None
        value, newest = self.pending.encode()
        key = record_key(self.partition, self.writer, self.next_seq)
        self.next_seq += 1
        self.records[key] = newest
        self.pending = RecordBuilder()
        self.window.dirty.clear()
        return key, value

    def advance(self, now_ms: int) -> list[bytes]:
        """Move the window to wall-clock now; return keys of records that fully expired."""
        self.apply()
        new_first = window_at(now_ms, self.window.window_minutes).first_minute
        old_first = self._first()
        if new_first > old_first:
            self._retain(range(max(old_first, new_first - RETAIN_MINUTES), new_first))
        self.window.advance(now_ms)
        self.dedup.expire_before(self._first())
        self.window.dirty.clear()
        keep_from = self._first() - RETAIN_MINUTES  # records also back the retained minutes
        expired = [key for key, newest in self.records.items() if newest < keep_from]
        for key in expired:
            del self.records[key]
        return expired

    def _retain(self, minutes: Iterable[int]) -> None:
        posts = self.window.posts
        for minute in minutes:
            kept = {pid: list(b[minute]) for pid, b in posts.items() if minute in b}
            if kept:
                self.retained[minute] = kept
        floor = self._first() - RETAIN_MINUTES
        for minute in [m for m in self.retained if m < floor]:
            del self.retained[minute]

    def load(self, records: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """Rebuild from recovered records, each event id once; return keys of expired records."""
        first = self._first()
        keep_from = first - RETAIN_MINUTES
        buckets: dict[int, dict[int, list[int]]] = {}
        retained_ids: set[str] = set()  # dedup only remembers in-window minutes
        expired: list[bytes] = []
        for key, value in records:
            doc = orjson.loads(value)
            newest = max(int(m) for m in doc["ids"])
            if newest < keep_from:
                expired.append(key)
                continue
            self.records[key] = newest
            for minute_s, ids in doc["ids"].items():
                minute = int(minute_s)
                if minute < keep_from:
                    continue
                events = zip(ids, doc["p"][minute_s], doc["t"][minute_s], strict=True)
                if minute >= first:
                    self._load_live(buckets, minute, events)
                else:
                    self._load_retained(retained_ids, minute, events)
        for post_id, post_buckets in buckets.items():
            self.window.load_post(post_id, post_buckets)
        self.window.dirty.clear()
        return expired

    def _load_live(self, buckets: dict[int, dict[int, list[int]]], minute: int,
                   events: Iterable[tuple[str, int, str]]) -> None:
        add = self.dedup.add
        for event_id, post_id, type_char in events:
            if add(event_id, minute):
                cell = buckets.setdefault(post_id, {}).setdefault(minute, [0, 0, 0, 0])
                cell[int(type_char)] += 1

    def _load_retained(self, seen: set[str], minute: int,
                       events: Iterable[tuple[str, int, str]]) -> None:
        posts = self.retained.setdefault(minute, {})
        for event_id, post_id, type_char in events:
            if event_id not in seen:
                seen.add(event_id)
                posts.setdefault(post_id, [0, 0, 0, 0])[int(type_char)] += 1

    def top(self, k: int) -> list[PostCounts]:
        """Top k posts of the current window."""
        self.apply()
        return self.window.top(k)

    def can_compute(self, window: Window) -> bool:
        """True when every minute of `window` is still held (in the window or retained)."""
        floor = self._first() - RETAIN_MINUTES
        return window.first_minute >= floor and window.last_minute <= (self.window.last_minute or 0)

    def complete_partial(self, window: Window, k: int) -> CompletePartial:
        """Exact top-k and event total over a past complete-minute window (a scan)."""
        self.apply()
        lo, hi = window.first_minute, window.last_minute
        acc: dict[int, list[int]] = {}
        sources: list[Iterable[tuple[int, dict[int, list[int]]]]] = [
            self.window.posts.items(),
            ((pid, {m: c}) for m, posts in self.retained.items() for pid, c in posts.items()),
        ]
        for source in sources:
            for post_id, post_buckets in source:
                for minute, counts in post_buckets.items():
                    if lo <= minute <= hi:
                        cell = acc.setdefault(post_id, [0, 0, 0, 0])
                        for i in range(4):
                            cell[i] += counts[i]
        posts = (PostCounts(pid, *c) for pid, c in acc.items() if any(c))
        total = sum(sum(c) for c in acc.values())
        return CompletePartial(window, heapq.nsmallest(k, posts, key=lambda p: p.key), total)
