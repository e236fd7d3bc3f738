"""The incremental top-k index answers exactly what a full selection over every post answers."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streamer.core import top_index
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow
from tests.state_helpers import forget_post

T0 = 28_000_000 * MINUTE_MS  # a minute boundary
WINDOW = 5

add_op = st.tuples(st.just("add"), st.lists(
    st.tuples(st.integers(1, 40), st.integers(0, 3), st.integers(-6, 2)), min_size=1, max_size=30))
advance_op = st.tuples(st.just("advance"), st.integers(0, 3))
query_op = st.tuples(st.just("top"), st.one_of(st.integers(1, 8), st.integers(1, 300)))
forget_op = st.tuples(st.just("forget"), st.integers(1, 40))
ops = st.lists(st.one_of(add_op, advance_op, query_op, forget_op), min_size=1, max_size=60)


def oracle(window: PartitionWindow, k: int) -> list[PostCounts]:
    """Every post's window totals, ranked by the contract (no index)."""
    return rank_posts([c for c in window.all_counts() if c.rank > 0], k)


class TestIncrementalTop:
    """Between queries the window gains events, moves, drops posts; every answer stays exact."""

    @hsettings(max_examples=300, deadline=None)
    @given(ops, st.integers(0, 2))
    def test_every_query_equals_a_full_selection(
        self, steps: list[tuple[str, Any]], retain: int
    ) -> None:
        """Random adds (past, current and future minutes), advances, forgets and queries of any k
        (a shallow candidate depth, so the bound is exercised with a few dozen posts)."""
        saved, top_index.MIN_DEPTH = top_index.MIN_DEPTH, 1
        try:
            self._run(steps, retain)
        finally:
            top_index.MIN_DEPTH = saved

    def _run(self, steps: list[tuple[str, Any]], retain: int) -> None:
        window = PartitionWindow(WINDOW, retain_minutes=retain)
        now = T0
        window.advance(now)
        for op, arg in steps:
            if op == "add":
                rows = list(arg)
                first = window.first_minute or 0
                kept = [(p, t, now // MINUTE_MS + m) for p, t, m in rows
                        if now // MINUTE_MS + m >= first - retain]
                if kept:
                    cols = np.array(kept, dtype=np.int64)
                    window.add_batch(cols[:, 0], cols[:, 1].astype(np.uint8), cols[:, 2])
            elif op == "advance":
                now += int(arg) * MINUTE_MS
                window.advance(now)
            elif op == "forget":
                forget_post(window, int(arg))
            else:
                k = int(arg)
                assert window.top(k) == oracle(window, k)
        assert window.top(10) == oracle(window, 10)

    def test_ties_at_the_cut_are_broken_by_post_id(self) -> None:
        """Many posts of one rank: the smallest ids win, also after more of them arrive."""
        window = PartitionWindow(WINDOW)
        window.advance(T0)
        minute = T0 // MINUTE_MS
        posts = np.arange(1000, 0, -1, dtype=np.int64)
        window.add_batch(posts, np.zeros(1000, dtype=np.uint8), np.full(1000, minute))
        assert [p.post_id for p in window.top(5)] == [1, 2, 3, 4, 5]
        window.add_batch(np.array([999], dtype=np.int64), np.array([0], dtype=np.uint8),
                         np.array([minute]))
        assert [p.post_id for p in window.top(3)] == [999, 1, 2]
        assert window.top(300) == oracle(window, 300)

    def test_a_query_deeper_than_the_candidates_rebuilds(self) -> None:
        """k beyond the candidate depth still answers exactly."""
        window = PartitionWindow(WINDOW)
        window.advance(T0)
        rng = np.random.default_rng(7)
        n = 5000
        window.add_batch(rng.integers(1, 3000, n), rng.integers(0, 4, n).astype(np.uint8),
                         np.full(n, T0 // MINUTE_MS))
        assert window.top(10) == oracle(window, 10)
        assert window.top(2000) == oracle(window, 2000)

    def test_candidates_that_expire_give_way_to_posts_behind_the_bound(self) -> None:
        """The best posts' minute leaves the window: the next ones (never candidates) win."""
        saved, top_index.MIN_DEPTH = top_index.MIN_DEPTH, 1
        try:
            window = PartitionWindow(WINDOW)
            window.advance(T0)
            m0 = T0 // MINUTE_MS
            old = np.repeat(np.array([7, 8, 9, 10], dtype=np.int64), 100)
            window.add_batch(old, np.zeros(len(old), dtype=np.uint8), np.full(len(old), m0))
            window.advance(T0 + MINUTE_MS)
            new = np.repeat(np.arange(1, 7, dtype=np.int64), [10, 10, 10, 10, 10, 50])
            window.add_batch(new, np.zeros(len(new), dtype=np.uint8), np.full(len(new), m0 + 1))
            assert [p.post_id for p in window.top(1)] == [7]  # candidates 7..10, bound post 6
            window.advance(T0 + WINDOW * MINUTE_MS)  # m0 leaves the window
            assert [p.post_id for p in window.top(1)] == [6]
            assert window.top(3) == oracle(window, 3)
        finally:
            top_index.MIN_DEPTH = saved
