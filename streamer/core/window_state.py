"""Exact sliding-window counters of one partition, packed: one slot per post, raw minute blocks.

Every post held gets a slot: a row of four window totals, a count of the events it has in held
minutes, and its id. Each held minute keeps its accepted events as two packed columns (slot,
type): 5 bytes per event. A minute entering the window adds its block to the totals in one
vectorised call, a minute leaving subtracts it, a minute past the retained span is dropped
whole and frees the slots of posts left with no events. Top-k comes from an incremental
candidate index (`core/top_index.py`) told which slots each batch touched; per event only the
counters are updated, everything else happens per batch or per minute.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core.post_index import PostIndex
from streamer.core.scoring import PostCounts
from streamer.core.top_index import TopIndex, best_slots, ranks_of
from streamer.core.window import MINUTE_MS, Window, window_at

I64 = npt.NDArray[np.int64]
Counters = npt.NDArray[np.signedinteger[Any]]  # (slots, 4): int32, widened to int64 if needed
# Batches added since the last minute operation wait as (slot, type, minute) columns, 13 bytes
# per event against 5 in a minute block; past this many events they are sorted into their
# blocks at once, so a busy minute holds at most this many events at 13 bytes.
RECENT_FLUSH_EVENTS = 1 << 14


class _Minute:
    """The accepted events of one minute as packed (slot, type) columns."""

    __slots__ = ("chunks",)

    def __init__(self) -> None:
        self.chunks: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]] = []

    def append(self, slots: npt.NDArray[np.int32], types: npt.NDArray[np.uint8]) -> None:
        """Add a block; blocks of similar size merge (as dedup runs do): a minute keeps a
        logarithmic number of chunks and every event is copied a logarithmic number of times."""
        chunks = self.chunks
        chunks.append((slots, types))
        while len(chunks) > 1 and len(chunks[-2][0]) <= 2 * len(chunks[-1][0]):
            (s1, t1), (s2, t2) = chunks[-2], chunks[-1]
            chunks[-2:] = [(np.concatenate((s1, s2)), np.concatenate((t1, t2)))]

    def columns(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
        if len(self.chunks) == 1:
            return self.chunks[0]
        return (np.concatenate([c[0] for c in self.chunks]),
                np.concatenate([c[1] for c in self.chunks]))


def scatter_add(target: Counters, slots: npt.NDArray[np.int32], types: npt.NDArray[np.uint8],
                sign: int = 1) -> None:
    """target[slot, type] += sign for every event: bincount for big batches, ufunc.at else."""
    if len(slots) * 4 < len(target):
        np.add.at(target, (slots, types), sign)
        return
    flat = slots.astype(np.int64) * 4 + types
    counts = np.bincount(flat, minlength=target.size).reshape(target.shape)
    target += (counts if sign > 0 else -counts).astype(target.dtype)


def count_into(target: npt.NDArray[np.int32], slots: npt.NDArray[np.int32], sign: int = 1) -> None:
    """target[slot] += sign per occurrence: bincount for big batches (ufunc.at is ~20x slower)."""
    if len(slots) * 4 < len(target):
        np.add.at(target, slots, sign)
        return
    counts = np.bincount(slots, minlength=len(target)).astype(target.dtype)
    target += counts if sign > 0 else -counts


def top_of(post_ids: I64, totals: Counters, k: int) -> list[PostCounts]:
    """The k best rows by (rank desc, post_id asc), rows of rank 0 left out (a full selection)."""
    rows = best_slots(np.arange(len(post_ids), dtype=np.int64), ranks_of(totals), post_ids, k)
    return [PostCounts(p, *c) for p, c in zip(post_ids[rows].tolist(), totals[rows].tolist(),
                                                strict=True)]


class PartitionWindow:
    """Per-post window totals plus held minute blocks, expired minute by minute."""

    def __init__(self, window_minutes: int, retain_minutes: int = 0) -> None:
        self.window_minutes = window_minutes
        self.retain_minutes = retain_minutes
        self.first_minute: int | None = None
        self.last_minute: int | None = None
        self.slot_of = PostIndex()
        self.totals: Counters = np.zeros((0, 4), dtype=np.int32)
        self.held = np.zeros(0, dtype=np.int32)  # events of the slot in held minutes
        self.post_of = np.zeros(0, dtype=np.int64)
        self._free = np.zeros(0, dtype=np.int32)  # a stack of free slots (top at the end)
        self._bound = 0  # upper bound of any total: int32 counters widen before they could wrap
        self._minutes: dict[int, _Minute] = {}
        self._recent: list[tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8], I64]] = []
        self._recent_n = 0  # events in _recent
        self._top = TopIndex()  # incremental exact top-k (core/top_index.py)

    def __len__(self) -> int:
        return len(self.slot_of)

    def held_minutes(self) -> dict[int, _Minute]:
        """Held minute blocks. add_batch only appends (the hot path); the batches added since
        are sorted into their minute blocks here, before any minute operation reads them."""
        if self._recent:
            self._flush()
        return self._minutes

    def _flush(self) -> None:
        """Sort the batches added since the last minute operation into their minute blocks."""
        recent, self._recent, self._recent_n = self._recent, [], 0
        slots = np.concatenate([r[0] for r in recent])
        types = np.concatenate([r[1] for r in recent])
        minutes = np.concatenate([r[2] for r in recent])
        count_into(self.held, slots)
        low = int(minutes.min())
        if int(minutes.max()) - low < 1 << 16:  # minute offsets: a radix sort, ~5x faster
            order = np.argsort((minutes - low).astype(np.uint16), kind="stable")
        else:
            order = np.argsort(minutes, kind="stable")
        ms = minutes[order]
        cuts = np.flatnonzero(ms[1:] != ms[:-1]) + 1
        for part in np.split(order, cuts):
            self._block(int(minutes[part[0]])).append(slots[part], types[part])

    def bounds(self) -> tuple[int, int]:
        """First and last minute of the window; advance() must have been called once."""
        if self.first_minute is None or self.last_minute is None:
            raise RuntimeError("advance() must be called before counting")
        return self.first_minute, self.last_minute

    def advance(self, now_ms: int) -> Window:
        """Move the window to the one of a publish at now_ms (never backwards)."""
        window = window_at(now_ms, self.window_minutes)
        first, last = window.first_minute, window.last_minute
        if self.last_minute is None or self.first_minute is None:
            self.first_minute, self.last_minute = first, last
            return window
        if last <= self.last_minute:
            return Window(self.first_minute * MINUTE_MS, (self.last_minute + 1) * MINUTE_MS)
        old_first, old_last = self.first_minute, self.last_minute
        for minute in sorted(self.held_minutes()):
            inside_before = old_first <= minute <= old_last
            inside_now = first <= minute <= last
            if inside_now and not inside_before:
                self._fold(minute, +1)
            elif inside_before and not inside_now:
                self._fold(minute, -1)
        self.first_minute, self.last_minute = first, last
        self._drop_before(first - self.retain_minutes)
        return window

    def lookup(self, post_ids: I64) -> npt.NDArray[np.int32]:
        """Slot of every post, -1 where it has none; valid until slots are assigned or freed."""
        return self.slot_of.lookup(post_ids)

    def slots(self, post_ids: I64, known: npt.NDArray[np.int32] | None = None
              ) -> npt.NDArray[np.int32]:
        """Slot of every post (new posts get one); `known`: their `lookup` since the last change."""
        found = self.slot_of.lookup(post_ids) if known is None else known.copy()
        missing = found < 0
        if missing.any():
            absent, inverse = np.unique(post_ids[missing], return_inverse=True)
            found[missing] = self._assign(absent)[inverse]
        return found

    def add_batch(self, post_ids: I64, types: npt.NDArray[np.uint8], minutes: I64,
                  known: npt.NDArray[np.int32] | None = None) -> npt.NDArray[np.int32]:
        """Hold accepted, deduplicated events; count those inside the window; return their slots.

        Minutes before the window start are held (as retained minutes) but not counted; the
        caller keeps them within `retain_minutes`. `known`: as for `slots`.
        """
        first, last = self.bounds()
        if not len(post_ids):
            return np.zeros(0, dtype=np.int32)
        slots = self.slots(post_ids, known)
        self._widen(len(post_ids))
        live = (minutes >= first) & (minutes <= last)
        if live.all():
            scatter_add(self.totals, slots, types)
            self._top.touch(slots)
        else:
            scatter_add(self.totals, slots[live], types[live])
            self._top.touch(slots[live])
        self._recent.append((slots, types, minutes))
        self._recent_n += len(slots)
        if self._recent_n >= RECENT_FLUSH_EVENTS:
            self._flush()
        return slots

    def top(self, k: int) -> list[PostCounts]:
        """This partition's top k posts with their counters (incremental, exact)."""
        return self._top.top(k, self.post_of, self.totals)

    def all_counts(self) -> Iterable[PostCounts]:
        """Every post with a counted event in the window."""
        rows = np.flatnonzero(self.totals.any(axis=1))
        for post_id, c in zip(self.post_of[rows].tolist(), self.totals[rows].tolist(),
                              strict=True):
            yield PostCounts(post_id, *c)

    def totals_over(self, lo: int, hi: int) -> Counters:
        """Per-slot totals over held minutes lo..hi (each must be in the window or retained)."""
        first, last = self.bounds()
        acc = self.totals.copy()
        for minute, block in self.held_minutes().items():
            inside, wanted = first <= minute <= last, lo <= minute <= hi
            if inside != wanted:
                slots, types = block.columns()
                scatter_add(acc, slots, types, 1 if wanted else -1)
        return acc

    def _widen(self, adding: int) -> None:
        """Keep int32 totals exact: past 2^30 possible, check the real maximum, widen if needed."""
        self._bound += adding
        if self._bound >= 1 << 30 and self.totals.dtype == np.int32:
            self._bound = int(self.totals.max(initial=0)) + adding
            if self._bound >= 1 << 30:
                self.totals = self.totals.astype(np.int64)

    def _block(self, minute: int) -> _Minute:
        block = self._minutes.get(minute)
        if block is None:
            block = self._minutes[minute] = _Minute()
        return block

    def _fold(self, minute: int, sign: int) -> None:
        slots, types = self.held_minutes()[minute].columns()
        scatter_add(self.totals, slots, types, sign)
        if sign > 0:
            self._top.touch(slots)

    def _drop_before(self, minute: int) -> None:
        old = [m for m in self.held_minutes() if m < minute]
        if not old:
            return
        for m in old:
            slots, _ = self.held_minutes().pop(m).columns()
            count_into(self.held, slots, -1)
        self._release(np.flatnonzero((self.held == 0) & (self.post_of >= 0)))

    def _assign(self, post_ids: I64) -> npt.NDArray[np.int32]:
        """Give new posts free slots (returned), growing the arrays (doubling) when none are left."""
        if not len(post_ids):
            return np.zeros(0, dtype=np.int32)
        need = len(post_ids) - len(self._free)
        if need > 0:
            size = len(self.post_of)
            grow = max(1024, size, need)
            self.totals = np.concatenate([self.totals, np.zeros((grow, 4), self.totals.dtype)])
            self.held = np.concatenate([self.held, np.zeros(grow, dtype=np.int32)])
            self.post_of = np.concatenate([self.post_of, np.full(grow, -1, dtype=np.int64)])
            fresh = np.arange(size + grow - 1, size - 1, -1, dtype=np.int32)
            self._free = np.concatenate([fresh, self._free])
        cut = len(self._free) - len(post_ids)
        taken = self._free[cut:]
        self._free = self._free[:cut].copy()
        self.slot_of.insert(post_ids, taken)
        self.post_of[taken] = post_ids
        return taken

    def _release(self, slots: npt.NDArray[np.intp]) -> None:
        """Free slots whose post has no held event left."""
        self.slot_of.delete(self.post_of[slots])
        self.totals[slots] = 0
        self.post_of[slots] = -1
        self._free = np.concatenate([self._free, slots.astype(np.int32)])
