"""PartitionWindow against a brute-force recount of the raw events at every step."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core import window_state
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, window_at
from streamer.core.window_state import PartitionWindow, count_into
from tests.state_helpers import Buckets, Outcome, add, buckets, counts, forget_post, load_post

T0 = 1_795_913_700_000 + 12_345  # a 2026 instant, not on a minute boundary


@dataclass
class Oracle:
    """Raw accepted events per post; everything else is recomputed from them."""

    window_minutes: int
    now_ms: int | None = None
    events: dict[int, list[tuple[int, int, int]]] = field(default_factory=dict)  # minute,type,n
    persisted: dict[int, Buckets] = field(default_factory=dict)

    def bounds(self) -> tuple[int, int]:
        """(first, last) minute of the window at the latest publish time."""
        assert self.now_ms is not None
        w = window_at(self.now_ms, self.window_minutes)
        return w.first_minute, w.last_minute

    def classify(self, ts_ms: int) -> Outcome:
        """Late before the window, pending after it, counted inside."""
        first, last = self.bounds()
        minute = ts_ms // MINUTE_MS
        if minute < first:
            return Outcome.LATE
        return Outcome.PENDING if minute > last else Outcome.COUNTED

    def counts(self, post_id: int) -> PostCounts:
        """Recount a post's events inside the window."""
        first, last = self.bounds()
        c = [0, 0, 0, 0]
        for minute, kind, n in self.events.get(post_id, []):
            if first <= minute <= last:
                c[kind] += n
        return PostCounts(post_id, *c)

    def buckets(self, post_id: int) -> Buckets:
        """Minute buckets still kept: every minute from the window start on (pending too)."""
        first, _ = self.bounds()
        out: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        for minute, kind, n in self.events.get(post_id, []):
            if minute >= first:
                out[minute][kind] += n
        return {m: c for m, c in out.items() if any(c)}


ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(-90_000, 200_000)),
        st.tuples(st.just("jump"), st.integers(0, 10)),
        st.tuples(
            st.just("add"), st.integers(0, 6), st.integers(0, 3), st.integers(-8, 8),
            st.integers(0, MINUTE_MS - 1),
        ),
        st.tuples(
            st.just("load"), st.integers(0, 6),
            st.dictionaries(st.integers(-3, 8), st.lists(st.integers(0, 3), min_size=4, max_size=4)),
        ),
        st.tuples(st.just("forget"), st.integers(0, 6)),
        st.tuples(st.just("buckets")),
    ),
    max_size=60,
)


def _check(state: PartitionWindow, oracle: Oracle, posts: range) -> None:
    first, last = oracle.bounds()
    assert (state.first_minute, state.last_minute) == (first, last)
    expected = [oracle.counts(p) for p in posts]
    for want in expected:
        assert counts(state, want.post_id) == want
    live = [p for p in expected if p.rank > 0]
    assert sorted(state.all_counts(), key=lambda p: p.post_id) == live
    for k in (1, 3, 10):
        assert state.top(k) == rank_posts(expected, k)


def _apply(state: PartitionWindow, oracle: Oracle, op: tuple[Any, ...]) -> None:
    kind = op[0]
    assert oracle.now_ms is not None
    if kind in ("advance", "jump"):
        step = int(op[1]) if kind == "advance" else int(op[1]) * oracle.window_minutes * MINUTE_MS
        target = oracle.now_ms + step
        window = state.advance(target)
        oracle.now_ms = max(oracle.now_ms, target)
        first, last = oracle.bounds()
        assert (window.first_minute, window.last_minute) == (first, last)
    elif kind == "add":
        post, type_index, minute_offset, ms = (int(x) for x in op[1:])
        ts = (oracle.now_ms // MINUTE_MS + minute_offset) * MINUTE_MS + ms
        want = oracle.classify(ts)
        assert add(state, post, type_index, ts) is want
        if want is not Outcome.LATE:
            oracle.events.setdefault(post, []).append((ts // MINUTE_MS, type_index, 1))
    elif kind == "load":
        post = int(op[1])
        first, _ = oracle.bounds()
        raw: dict[int, list[int]] = op[2]
        restored = {first + off: list(c) for off, c in raw.items()}
        load_post(state, post, restored)
        oracle.events[post] = [
            (m, i, n) for m, c in restored.items() for i, n in enumerate(c) if n
        ]
        oracle.persisted[post] = oracle.buckets(post)
    elif kind == "forget":
        post = int(op[1])
        forget_post(state, post)
        oracle.events.pop(post, None)
        oracle.persisted[post] = {}
    else:
        # The held minute buckets of every post equal the oracle's (dirty tracking is gone:
        # records carry the changes, so what is checked is the bucket content itself).
        for post in range(7):
            assert buckets(state, post) == oracle.buckets(post)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10**6), ops)
def test_partition_window_matches_brute_force(
    window_minutes: int, start_offset: int, program: list[tuple[Any, ...]]
) -> None:
    """Random events and publish times: classification, totals, top-K, expiry, buckets."""
    _run(window_minutes, start_offset, program)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 10**6), ops)
def test_partition_window_matches_brute_force_sorting_every_few_events(
    window_minutes: int, start_offset: int, program: list[tuple[Any, ...]]
) -> None:
    """The same with recent batches sorted into minute blocks every 3 events (not only at
    minute operations): blocks of every size and order merge without losing an event."""
    with patch.object(window_state, "RECENT_FLUSH_EVENTS", 3):
        _run(window_minutes, start_offset, program)


def _run(window_minutes: int, start_offset: int, program: list[tuple[Any, ...]]) -> None:
    state = PartitionWindow(window_minutes)
    oracle = Oracle(window_minutes, T0 + start_offset)
    state.advance(oracle.now_ms or 0)
    for op in program:
        _apply(state, oracle, op)
        _check(state, oracle, range(7))


def test_recent_batches_are_bounded_and_minute_blocks_stay_few() -> None:
    """Many batches without a minute operation: the unsorted batches never exceed the bound,
    each minute keeps a logarithmic number of chunks, and every event is counted once."""
    state = PartitionWindow(60)
    state.advance(T0)
    minute = T0 // MINUTE_MS
    rng = np.random.default_rng(7)
    for _ in range(200):
        posts = rng.integers(1, 500, 1000)
        state.add_batch(posts, np.zeros(1000, dtype=np.uint8), np.full(1000, minute - 1 - posts % 3))
        assert state._recent_n < window_state.RECENT_FLUSH_EVENTS
    assert sum(len(r[0]) for r in state._recent) == state._recent_n
    blocks = state.held_minutes()
    assert sum(len(b.columns()[0]) for b in blocks.values()) == 200_000
    assert max(len(b.chunks) for b in blocks.values()) <= 8  # log2 of 200 batches
    assert int(state.totals[:, 0].sum()) == 200_000
    assert int(state.held.sum()) == 200_000


def test_add_before_advance_is_an_error() -> None:
    """The window must be placed before events are counted or restored."""
    state = PartitionWindow(60)
    with pytest.raises(RuntimeError):
        add(state, 1, 0, T0)
    with pytest.raises(RuntimeError):
        load_post(state, 1, {})


def test_expiry_is_exact_as_minutes_leave() -> None:
    """An event counts until the publish whose window starts after its minute."""
    state = PartitionWindow(2)
    minute = T0 // MINUTE_MS
    state.advance(minute * MINUTE_MS)
    assert add(state, 7, 1, minute * MINUTE_MS) is Outcome.COUNTED
    state.advance((minute + 1) * MINUTE_MS + MINUTE_MS - 1)  # window [minute, minute+2)
    assert counts(state, 7).likes == 1
    state.advance((minute + 2) * MINUTE_MS)  # window [minute+1, minute+3): gone
    assert counts(state, 7) == PostCounts(7)
    assert state.top(5) == []
    assert buckets(state, 7) == {}


def test_pending_event_counts_when_its_minute_opens() -> None:
    """A valid event up to 5 min ahead waits and is counted exactly from its minute on."""
    state = PartitionWindow(60)
    minute = T0 // MINUTE_MS
    state.advance(T0)
    assert add(state, 3, 3, (minute + 2) * MINUTE_MS + 5) is Outcome.PENDING
    assert counts(state, 3) == PostCounts(3)
    state.advance((minute + 2) * MINUTE_MS - 1)
    assert state.top(1) == []
    state.advance((minute + 2) * MINUTE_MS)
    assert state.top(1) == [PostCounts(3, shares=1)]


def test_advance_never_goes_backwards() -> None:
    """A publish time earlier than the last one keeps the newer window."""
    state = PartitionWindow(5)
    later = state.advance(T0 + 10 * MINUTE_MS)
    assert state.advance(T0) == later
    assert add(state, 1, 0, T0) is Outcome.LATE


def test_buckets_are_a_snapshot() -> None:
    """Buckets handed out do not change when later events are counted."""
    state = PartitionWindow(60)
    state.advance(T0)
    add(state, 1, 0, T0)
    drained = {1: buckets(state, 1)}
    snapshot = {m: list(c) for m, c in drained[1].items()}
    add(state, 1, 0, T0)
    assert drained[1] == snapshot


def test_load_post_copies_its_input() -> None:
    """Counting after a restore does not write into the caller's buckets."""
    state = PartitionWindow(60)
    state.advance(T0)
    minute = T0 // MINUTE_MS
    given_buckets: Buckets = {minute: [1, 0, 0, 0]}
    load_post(state, 5, given_buckets)
    add(state, 5, 0, T0)
    assert given_buckets == {minute: [1, 0, 0, 0]}
    assert counts(state, 5).views == 2


@given(st.integers(1, 50), st.lists(st.integers(0, 49), max_size=300), st.sampled_from([1, -1]))
def test_count_into_equals_add_at(size: int, slots: list[int], sign: int) -> None:
    """Both branches of count_into (ufunc.at for few slots, bincount for many) count exactly."""
    picked = np.array([s % size for s in slots], dtype=np.int32)
    want = np.full(size, 1000, dtype=np.int32)
    np.add.at(want, picked, sign)
    got = np.full(size, 1000, dtype=np.int32)
    count_into(got, picked, sign)
    assert got.tolist() == want.tolist()
