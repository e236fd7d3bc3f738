"""Counting people: exact distinct accounts per post and event type over the sliding window.

With `JOB_TRENDING_COUNT=people` a post's four counters are the number of distinct accounts
with at least one counted event of that type in the window, and `JOB_TRENDING_MIN_PEOPLE`
lists a post only with that many distinct accounts of any type. The state is keyed by the
partition window's post slots (streamer.core.window_state), so it costs no post ids:

- `_Pairs`: one entry per (post slot, account) with an event in the window, holding the newest
  counted minute per type (int32; `NONE` for none). Fixed-width 16-byte keys in a few sorted
  runs (a log-structured set like the event-id dedup), so a batch is one vectorised lookup and
  the newest minute is moved in place: a later event moves an account's expiry, never counts
  it twice. When the window start passes an account's newest minute of a type, that counter
  drops; a pair with no type left is dropped in the same pass (once per new window start).
- raw minute blocks (slot, type, account) of every held minute, like the window's own blocks:
  future minutes are counted when they open, and the counts over any held window (reconcile's
  complete minutes) are recounted from them. Blocks are dropped whole, with the window's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from streamer.core.scoring import PostCounts
from streamer.core.top_index import TopIndex
from streamer.core.window_state import count_into, scatter_add

I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
COUNT_MODES = ("events", "people")
NONE = np.iinfo(np.int32).min  # "no counted minute of this type"
UNKNOWN_USER = -1  # events of records written before accounts were recorded: not counted as people
_MAX_CHUNKS = 8  # a minute's small appended blocks are packed into one past this
_MIX = np.uint64(0x9E3779B97F4A7C15)  # spreads slots over the high half (sort key)


@dataclass(frozen=True, slots=True)
class Counting:
    """What trending counts (JOB_TRENDING_COUNT) and the accounts a listed post needs."""

    people: bool = False
    min_people: int = 1

    @property
    def tracks_people(self) -> bool:
        """True when accounts must be counted at all (events mode with a minimum of 1 needs none)."""
        return self.people or self.min_people > 1

    @property
    def mode(self) -> str:
        """The meta's `count`: "events" or "people"."""
        return "people" if self.people else "events"


EVENTS = Counting()


def counting_of(count: str, min_people: int) -> Counting:
    """The Counting of JOB_TRENDING_COUNT and JOB_TRENDING_MIN_PEOPLE."""
    return Counting(count == "people", min_people)


def pair_keys(slots: I32, users: I64) -> tuple[U64, U64]:
    """(high, low) key of every (slot, account) pair: low is the slot, high the account mixed
    with it, so the pair is exact (account = high ^ mix(low)) and high is well spread."""
    low = slots.astype(np.uint64)
    return users.astype(np.uint64) ^ (low * _MIX), low


class _Run:
    """One run of pairs sorted by their high half, each with its newest minute per type."""

    __slots__ = ("high", "latest", "low")

    def __init__(self, high: U64, low: U64, latest: I32) -> None:
        order = np.argsort(high, kind="stable")
        self.high, self.low, self.latest = high[order], low[order], latest[order]

    def __len__(self) -> int:
        return len(self.high)

    def find(self, high: U64, low: U64) -> tuple[npt.NDArray[np.bool_], I64]:
        """Which pairs are here, and their positions (valid where found)."""
        pos = np.searchsorted(self.high, high).astype(np.int64)
        at = np.minimum(pos, len(self.high) - 1)
        same_high = self.high[at] == high
        found = same_high & (self.low[at] == low)
        for i in np.flatnonzero(same_high & ~found).tolist():  # equal high halves: look further
            end = int(np.searchsorted(self.high, high[i], side="right"))
            hit = np.flatnonzero(self.low[int(pos[i]):end] == low[i])
            if len(hit):
                found[i], pos[i] = True, int(pos[i]) + int(hit[0])
        return found, pos

    def keep(self, rows: npt.NDArray[np.bool_]) -> None:
        self.high, self.low, self.latest = self.high[rows], self.low[rows], self.latest[rows]


class _Pairs:
    """Every (slot, account) pair counted in the window, in a few runs (each pair in one)."""

    def __init__(self) -> None:
        self.runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self.runs)

    def locate(self, high: U64, low: U64) -> tuple[I64, I64]:
        """Run index (-1: absent) and position of every pair."""
        run_of = np.full(len(high), -1, dtype=np.int64)
        pos_of = np.zeros(len(high), dtype=np.int64)
        todo = np.arange(len(high))
        for r, run in enumerate(self.runs):
            if not len(todo):
                break
            found, pos = run.find(high[todo], low[todo])
            run_of[todo[found]], pos_of[todo[found]] = r, pos[found]
            todo = todo[~found]
        return run_of, pos_of

    def push(self, high: U64, low: U64, latest: I32) -> None:
        self.runs.append(_Run(high, low, latest))
        runs = self.runs
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            b, a = runs.pop(), runs.pop()
            runs.append(_Run(np.concatenate([a.high, b.high]), np.concatenate([a.low, b.low]),
                             np.concatenate([a.latest, b.latest])))


class PeopleWindow:
    """Distinct accounts per slot and type (`counts`) and of any type (`anyone`) in the window."""

    def __init__(self, retain_minutes: int) -> None:
        self.retain_minutes = retain_minutes
        self.first_minute: int | None = None
        self.last_minute: int | None = None
        self.counts: npt.NDArray[np.int32] = np.zeros((0, 4), dtype=np.int32)
        self.anyone: npt.NDArray[np.int32] = np.zeros(0, dtype=np.int32)
        self.pairs = _Pairs()
        self._minutes: dict[int, list[tuple[I32, U8, I64]]] = {}
        self._recent: list[tuple[I32, U8, I64, I64]] = []  # added, not yet in minute blocks
        self._top = TopIndex()

    def fit(self, slots: int) -> None:
        """Grow the counters to the window's slot count (new slots start at zero)."""
        grow = slots - len(self.anyone)
        if grow > 0:
            self.counts = np.concatenate([self.counts, np.zeros((grow, 4), dtype=np.int32)])
            self.anyone = np.concatenate([self.anyone, np.zeros(grow, dtype=np.int32)])

    def add_batch(self, slots: I32, types: U8, users: I64, minutes: I64) -> None:
        """Hold deduplicated events; count the accounts of those inside the window."""
        first, last = self._bounds()
        known = users >= 0
        if not known.all():
            slots, types, users, minutes = slots[known], types[known], users[known], minutes[known]
        if not len(slots):
            return
        self._recent.append((slots, types, users, minutes))  # sorted into minutes lazily
        live = (minutes >= first) & (minutes <= last)
        if live.all():
            self._count(slots, types, users, minutes)
        elif live.any():
            self._count(slots[live], types[live], users[live], minutes[live])

    def advance(self, first: int, last: int) -> None:
        """Follow the window: drop accounts whose newest minute left, count minutes that opened."""
        if self.first_minute is None or self.last_minute is None:
            self.first_minute, self.last_minute = first, last
            return
        if last <= self.last_minute:
            return
        old_last = self.last_minute
        self._flush()
        if first > self.first_minute:
            self._expire(first)
        self.first_minute, self.last_minute = first, last
        for minute in sorted(m for m in self._minutes if old_last < m <= last and m >= first):
            for slots, types, users in self._minutes[minute]:
                self._count(slots, types, users, np.full(len(slots), minute, dtype=np.int64))
        for minute in [m for m in self._minutes if m < first - self.retain_minutes]:
            del self._minutes[minute]

    def top(self, k: int, post_of: I64) -> list[PostCounts]:
        """The k best posts by their people counters (incremental, exact)."""
        self.fit(len(post_of))
        return self._top.top(k, post_of, self.counts)

    def counts_over(self, lo: int, hi: int, slots: int) -> tuple[npt.NDArray[np.int64], I64]:
        """(per-slot people per type, per-slot people of any type) over held minutes lo..hi,
        recounted from the minute blocks (reconcile's complete-minute windows)."""
        self._flush()
        parts = [b for m, blocks in self._minutes.items() if lo <= m <= hi for b in blocks]
        counts = np.zeros((slots, 4), dtype=np.int64)
        anyone = np.zeros(slots, dtype=np.int64)
        if not parts:
            return counts, anyone
        s = np.concatenate([p[0] for p in parts]).astype(np.int64)
        t = np.concatenate([p[1] for p in parts]).astype(np.int64)
        u = np.concatenate([p[2] for p in parts])
        cell = s * 4 + t
        counts += np.bincount(cell[_firsts(cell, u)], minlength=slots * 4).reshape(slots, 4)
        anyone += np.bincount(s[_firsts(s, u)], minlength=slots)
        return counts, anyone

    def held_events(self) -> int:
        """Events held in the raw minute blocks (memory accounting)."""
        self._flush()
        return sum(len(b[0]) for blocks in self._minutes.values() for b in blocks)

    def _flush(self) -> None:
        """Sort the batches added since the last minute operation into their minute blocks."""
        if not self._recent:
            return
        recent, self._recent = self._recent, []
        self._hold(*(np.concatenate([r[i] for r in recent]) for i in range(4)))

    def _hold(self, slots: I32, types: U8, users: I64, minutes: I64) -> None:
        """Append events to their minute blocks (a minute's many small chunks packed at times)."""
        parts: list[tuple[int, Any]]
        if minutes.min() == minutes.max():
            parts = [(int(minutes[0]), slice(None))]
        else:
            order = np.argsort(minutes, kind="stable")
            ms = minutes[order]
            cuts = np.flatnonzero(ms[1:] != ms[:-1]) + 1
            parts = [(int(minutes[rows[0]]), rows) for rows in np.split(order, cuts)]
        for minute, rows in parts:
            block = self._minutes.setdefault(minute, [])
            block.append((slots[rows], types[rows], users[rows]))
            if len(block) > _MAX_CHUNKS:
                block[:] = [(np.concatenate([b[0] for b in block]),
                             np.concatenate([b[1] for b in block]),
                             np.concatenate([b[2] for b in block]))]

    def _bounds(self) -> tuple[int, int]:
        if self.first_minute is None or self.last_minute is None:
            raise RuntimeError("advance() must be called before counting")
        return self.first_minute, self.last_minute

    def _count(self, slots: I32, types: U8, users: I64, minutes: I64) -> None:
        """Count in-window events: a (pair, type) new to the window adds one; the newest minute
        of every pair and type moves forward."""
        first, _ = self._bounds()
        self.fit(int(slots.max()) + 1)
        h, lo, newest = _newest(*pair_keys(slots, users), types, minutes)
        run_of, pos_of = self.pairs.locate(h, lo)
        old = np.full_like(newest, NONE)
        for r, run in enumerate(self.pairs.runs):
            rows = np.flatnonzero(run_of == r)
            if len(rows):
                old[rows] = run.latest[pos_of[rows]]
                run.latest[pos_of[rows]] = np.maximum(old[rows], newest[rows])
        pair_slots = lo.astype(np.int32)
        rows, cols = np.nonzero((old < first) & (newest >= first))
        scatter_add(self.counts, pair_slots[rows], cols.astype(np.uint8))
        count_into(self.anyone, pair_slots[np.flatnonzero(old.max(axis=1) < first)])
        absent = run_of < 0
        if absent.any():
            self.pairs.push(h[absent], lo[absent], newest[absent])
        self._top.touch(pair_slots)

    def _expire(self, first: int) -> None:
        """The window start moved to `first`: per pair, types whose newest minute is older stop
        counting; pairs with no type left are dropped."""
        for run in self.pairs.runs:
            gone = (run.latest != NONE) & (run.latest < first)
            if not gone.any():
                continue
            slots = run.low.astype(np.int32)
            rows, cols = np.nonzero(gone)
            scatter_add(self.counts, slots[rows], cols.astype(np.uint8), -1)
            run.latest[gone] = NONE
            left = (run.latest != NONE).any(axis=1)
            count_into(self.anyone, slots[~left], -1)
            run.keep(left)
        self.pairs.runs = [r for r in self.pairs.runs if len(r)]


def _newest(high: U64, low: U64, types: U8, minutes: I64) -> tuple[U64, U64, I32]:
    """Distinct pairs of a batch, sorted, with the newest minute of each type (NONE: none)."""
    order = np.argsort(high, kind="stable")
    h, lo = high[order], low[order]
    if ((h[1:] == h[:-1]) & (lo[1:] != lo[:-1])).any():  # two pairs share a high half: rare
        order = np.lexsort((low, high))
        h, lo = high[order], low[order]
    fresh = np.concatenate(([True], (h[1:] != h[:-1]) | (lo[1:] != lo[:-1])))
    newest = np.full((int(fresh.sum()), 4), NONE, dtype=np.int32)
    mins, kinds = minutes[order].astype(np.int32), types[order]
    if len(newest) == len(h):  # every pair once (the usual wide batch): no reduction needed
        newest[np.arange(len(h)), kinds] = mins
        return h, lo, newest
    np.maximum.at(newest, (np.cumsum(fresh) - 1, kinds), mins)
    return h[fresh], lo[fresh], newest


def _firsts(key: I64, users: I64) -> npt.NDArray[np.intp]:
    """Index of one row per distinct (key, user)."""
    order = np.lexsort((users, key))
    k, u = key[order], users[order]
    return order[np.concatenate(([True], (k[1:] != k[:-1]) | (u[1:] != u[:-1])))]


def eligible_top(top: Callable[[int], list[PostCounts]],
                 people_of: Callable[[list[int]], Sequence[int]],
                 k: int, min_people: int) -> list[PostCounts]:
    """The k best posts with at least `min_people` accounts: the first k eligible posts of the
    full order, read from the top in growing depths."""
    if min_people <= 1:
        return top(k)
    depth = max(k, 1)
    while True:
        got = top(depth)
        people = people_of([p.post_id for p in got])
        keep = [p for p, n in zip(got, people, strict=True) if n >= min_people]
        if len(keep) >= k or len(got) < depth:
            return keep[:k]
        depth *= 4


def masked(counts: npt.NDArray[Any], anyone: npt.NDArray[Any], min_people: int) -> npt.NDArray[Any]:
    """Counters with the rows of posts below `min_people` accounts zeroed (left out of a top)."""
    if min_people <= 1:
        return counts
    return counts * (anyone >= min_people)[:, None]
