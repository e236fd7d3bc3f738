"""Suggested users against an independent brute force written from the contract text."""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.suggest import Suggestion, adamic_adar_weight, rank_suggestions, suggest_for_user, top_up

Edge = tuple[int, int]
TOL = 1e-9


def oracle(user: int, edges: Iterable[Edge], limit: int) -> list[tuple[int, float, int]]:
    """Contract: F(u), candidates, mutual_count, Adamic-Adar, order at 1e-9; (id, score, mutual)."""
    following: dict[int, set[int]] = {}
    for a, b in edges:
        following.setdefault(a, set()).add(b)

    def follows_of(x: int) -> set[int]:
        return following.get(x, set())

    f_u = follows_of(user)
    candidates = {c for f in f_u for c in follows_of(f)} - {user} - f_u
    rows = []
    for c in candidates:
        via = [f for f in f_u if c in follows_of(f)]
        score = math.fsum(1 / math.log(2 + len(follows_of(f))) for f in via)
        rows.append((c, score, len(via)))

    def compare(a: tuple[int, float, int], b: tuple[int, float, int]) -> int:
        if abs(a[1] - b[1]) > TOL:
            return -1 if a[1] > b[1] else 1
        if a[2] != b[2]:
            return b[2] - a[2]
        return a[0] - b[0]

    return sorted(rows, key=functools.cmp_to_key(compare))[:limit]


def adjacency(edges: Iterable[Edge]) -> dict[int, list[int]]:
    """follower -> followees, with repeated edges kept (the code must not double count)."""
    out: dict[int, list[int]] = {}
    for a, b in edges:
        out.setdefault(a, []).append(b)
    return out


def same(got: list[Suggestion], want: list[tuple[int, float, int]]) -> None:
    """Same ids and mutual counts in the same order; scores equal to 1e-9."""
    assert [(s.user_id, s.mutual_count) for s in got] == [(c, m) for c, _, m in want]
    for s, (_, score, _) in zip(got, want, strict=True):
        assert abs(s.score - score) <= TOL


graphs = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=90)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(graphs, st.integers(0, 12), st.integers(1, 15))
def test_suggest_for_user_matches_oracle(edges: list[Edge], user: int, limit: int) -> None:
    """Random small graphs (self-follows, repeats, dense ties) against the brute force."""
    same(suggest_for_user(user, adjacency(edges), limit), oracle(user, edges, limit))


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(graphs, st.integers(1, 5))
def test_every_user_of_a_graph(edges: list[Edge], limit: int) -> None:
    """All users of one graph, duplicates doubled in the adjacency list."""
    doubled = adjacency(edges + edges)
    for user in range(13):
        same(suggest_for_user(user, doubled, limit), oracle(user, edges, limit))


def test_worked_example() -> None:
    """u=1 follows 2 and 3; 2 follows 4, 5; 3 follows 4, 1, 2 -> 4 via both, 5 via 2."""
    follows = {1: [2, 3], 2: [4, 5], 3: [4, 1, 2]}
    got = suggest_for_user(1, follows, 10)
    w2, w3 = 1 / math.log(4), 1 / math.log(5)
    assert [(s.user_id, s.mutual_count) for s in got] == [(4, 2), (5, 1)]
    assert math.isclose(got[0].score, w2 + w3) and math.isclose(got[1].score, w2)
    assert adamic_adar_weight(2) == w2


def test_no_follows_or_no_candidates_is_empty() -> None:
    """A user who follows nobody, or whose follows lead back to known accounts, gets []."""
    assert suggest_for_user(1, {}, 5) == []
    assert suggest_for_user(1, {1: [2], 2: [1]}, 5) == []
    assert suggest_for_user(1, {1: [2, 3], 2: [3], 3: [2]}, 5) == []


# ---- rank_suggestions tie rules ------------------------------------------------------------


def ids(items: list[Suggestion]) -> list[int]:
    """User ids in order."""
    return [s.user_id for s in items]


def test_scores_within_1e9_tie_then_mutual_desc_then_id_asc() -> None:
    """Near-equal scores are ties: more mutuals first, then the lower user id."""
    items = [
        Suggestion(9, 1.0, 1),
        Suggestion(3, 1.0 + 5e-10, 1),
        Suggestion(7, 1.0 - 5e-10, 2),
        Suggestion(1, 0.5, 9),
    ]
    assert ids(rank_suggestions(items, 10)) == [7, 3, 9, 1]


def test_scores_further_apart_than_1e9_order_by_score() -> None:
    """2e-9 apart is not a tie: the higher score wins whatever the mutual count."""
    items = [Suggestion(1, 1.0, 5), Suggestion(2, 1.0 + 2e-9, 1)]
    assert ids(rank_suggestions(items, 10)) == [2, 1]


def test_limit_keeps_the_first_entries_and_empty_is_empty() -> None:
    """The cut applies after tie-breaking; no candidates gives []."""
    items = [Suggestion(u, 1.0 + (u % 2) * 1e-12, u % 3) for u in range(10)]
    full = rank_suggestions(items, 100)
    for limit in range(1, 11):
        assert rank_suggestions(items, limit) == full[:limit]
    assert ids(full) == [2, 5, 8, 1, 4, 7, 0, 3, 6, 9]
    assert rank_suggestions([], 5) == []


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(
    st.lists(
        st.builds(Suggestion, st.integers(0, 50), st.sampled_from([0.5, 1.0, 2.0]), st.integers(1, 4)),
        unique_by=lambda s: s.user_id,
    ),
    st.integers(1, 60),
)
def test_rank_suggestions_with_exact_ties(items: list[Suggestion], limit: int) -> None:
    """With clearly separated scores the order is (score desc, mutual desc, id asc)."""
    want = sorted(items, key=lambda s: (-s.score, -s.mutual_count, s.user_id))[:limit]
    assert rank_suggestions(items, limit) == want


def test_payload() -> None:
    """Entry fields are user_id, score, mutual_count."""
    assert Suggestion(77, 1.3918, 3).to_payload() == {"user_id": 77, "score": 1.3918, "mutual_count": 3}


def test_top_up_fills_after_the_candidates_skipping_exclusions() -> None:
    """Popular accounts in order after the second-degree ones; u, excluded and listed skipped."""
    listed = [Suggestion(5, 1.2, 2)]
    got = top_up(1, listed, [5, 1, 7, 8, 9, 10], {7}, 4)
    assert got == [Suggestion(5, 1.2, 2), Suggestion(8, 0.0, 0), Suggestion(9, 0.0, 0),
                   Suggestion(10, 0.0, 0)]
    assert top_up(1, listed, [2, 3], set(), 1) == listed  # already full: unchanged
    assert top_up(1, [], [1, 7], {7}, 3) == []  # nothing left to offer
