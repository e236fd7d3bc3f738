"""Exact sliding-window counters of one partition: minute buckets, running totals, top-K."""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

from streamer.core.scoring import PostCounts, rank_value
from streamer.core.topk import TopKIndex
from streamer.core.window import MINUTE_MS, Window, window_at

Buckets = dict[int, list[int]]  # minute -> [views, likes, comments, shares]


class AddResult(Enum):
    """What `add` did with an event."""

    COUNTED = "counted"  # inside the current window
    PENDING = "pending"  # ahead of the window (valid future ts); counted once its minute opens
    LATE = "late"  # older than the window start: ignored


class PartitionWindow:
    """Per-post minute buckets plus running totals over the window, expired minute by minute."""

    def __init__(self, window_minutes: int) -> None:
        self.window_minutes = window_minutes
        self.first_minute: int | None = None
        self.last_minute: int | None = None
        self.posts: dict[int, Buckets] = {}
        self.totals: dict[int, list[int]] = {}
        self._by_minute: dict[int, set[int]] = {}
        self._index = TopKIndex()
        self._stale: set[int] = set()  # posts whose rank changed since the index was last synced
        self.dirty: set[int] = set()

    @property
    def index(self) -> TopKIndex:
        """The top-K index, brought up to date (ranks are folded in lazily, once per post)."""
        if self._stale:
            totals = self.totals
            update = self._index.update
            for post_id in self._stale:
                t = totals.get(post_id)
                update(post_id, rank_value(*t) if t is not None else 0)
            self._stale.clear()
        return self._index

    def advance(self, now_ms: int) -> Window:
        """Move the window to the one of a publish at now_ms (never backwards)."""
        window = window_at(now_ms, self.window_minutes)
        first, last = window.first_minute, window.last_minute
        if self.last_minute is None or self.first_minute is None:
            self.first_minute, self.last_minute = first, last
            return window
        if last <= self.last_minute:
            return Window(self.first_minute * MINUTE_MS, (self.last_minute + 1) * MINUTE_MS)
        for minute in sorted(m for m in self._by_minute if self.last_minute < m <= last):
            self._apply_minute(minute, +1)
        for minute in sorted(m for m in self._by_minute if m < first):
            if minute >= self.first_minute:
                self._apply_minute(minute, -1)
            self._drop_minute(minute)
        self.first_minute, self.last_minute = first, last
        return window

    def add(self, post_id: int, type_index: int, ts_ms: int, count: int = 1) -> AddResult:
        """Count an event of a post at ts_ms; the caller deduplicates first."""
        if self.first_minute is None or self.last_minute is None:
            raise RuntimeError("advance() must be called before add()")
        minute = ts_ms // MINUTE_MS
        if minute < self.first_minute:
            return AddResult.LATE
        buckets = self.posts.setdefault(post_id, {})
        counters = buckets.get(minute)
        if counters is None:
            counters = buckets[minute] = [0, 0, 0, 0]
            self._by_minute.setdefault(minute, set()).add(post_id)
        counters[type_index] += count
        self.dirty.add(post_id)
        if minute > self.last_minute:
            return AddResult.PENDING
        totals = self.totals.get(post_id)
        if totals is None:
            totals = self.totals[post_id] = [0, 0, 0, 0]
        totals[type_index] += count
        self._stale.add(post_id)
        return AddResult.COUNTED

    def load_post(self, post_id: int, buckets: Buckets) -> None:
        """Restore one post's buckets (from a recovered table) into the current window."""
        if self.first_minute is None or self.last_minute is None:
            raise RuntimeError("advance() must be called before load_post()")
        self.forget_post(post_id)
        kept = {m: list(c) for m, c in buckets.items() if m >= self.first_minute and any(c)}
        if not kept:
            return
        self.posts[post_id] = kept
        totals = [0, 0, 0, 0]
        for minute, counters in kept.items():
            self._by_minute.setdefault(minute, set()).add(post_id)
            if minute <= self.last_minute:
                totals = [a + b for a, b in zip(totals, counters, strict=True)]
        if any(totals):
            self.totals[post_id] = totals
            self._stale.add(post_id)

    def forget_post(self, post_id: int) -> None:
        """Drop a post entirely (its partition moved to another worker)."""
        for minute in self.posts.pop(post_id, {}):
            posts = self._by_minute.get(minute)
            if posts is not None:
                posts.discard(post_id)
                if not posts:
                    del self._by_minute[minute]
        self.totals.pop(post_id, None)
        self._stale.discard(post_id)
        self._index.update(post_id, 0)
        self.dirty.discard(post_id)

    def top(self, k: int) -> list[PostCounts]:
        """This partition's top k posts with their counters."""
        return [PostCounts(pid, *self.totals[pid]) for pid, _ in self.index.top(k)]

    def counts(self, post_id: int) -> PostCounts:
        """Window totals of one post."""
        return PostCounts(post_id, *self.totals.get(post_id, [0, 0, 0, 0]))

    def all_counts(self) -> Iterable[PostCounts]:
        """Every post with a counted event in the window."""
        return (PostCounts(pid, *t) for pid, t in self.totals.items() if any(t))

    def drain_dirty(self) -> dict[int, Buckets]:
        """Posts changed since the last drain, with a copy of their buckets (empty = deleted)."""
        out = {
            pid: {m: list(c) for m, c in self.posts.get(pid, {}).items()} for pid in self.dirty
        }
        self.dirty.clear()
        return out

    def _apply_minute(self, minute: int, sign: int) -> None:
        for post_id in self._by_minute.get(minute, ()):
            counters = self.posts[post_id][minute]
            totals = self.totals.setdefault(post_id, [0, 0, 0, 0])
            for i in range(4):
                totals[i] += sign * counters[i]
            self._stale.add(post_id)
            if not any(totals):
                del self.totals[post_id]

    def _drop_minute(self, minute: int) -> None:
        for post_id in self._by_minute.pop(minute, ()):
            buckets = self.posts[post_id]
            del buckets[minute]
            self.dirty.add(post_id)
            if not buckets:
                del self.posts[post_id]
