"""Score, ranking key, top-K index and partial merge against brute-force oracles."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.scoring import PostCounts, merge_partials, rank_posts, rank_value, score_of_rank

counts = st.integers(min_value=0, max_value=10**6)
post_ids = st.integers(min_value=0, max_value=2**63 - 1)
small_ids = st.integers(min_value=0, max_value=30)  # small range: many ties by rank and id


def post_counts(ids: st.SearchStrategy[int] = small_ids) -> st.SearchStrategy[PostCounts]:
    """PostCounts with small counters so equal ranks (ties) are common."""
    c = st.integers(min_value=0, max_value=4)
    return st.builds(PostCounts, ids, c, c, c, c)


def exact_score(p: PostCounts) -> Fraction:
    """The contract's score in exact arithmetic."""
    return (
        Fraction(p.views, 10) + 2 * p.likes + 3 * p.comments + 5 * p.shares
    )


def oracle_rank(posts: list[PostCounts], k: int) -> list[PostCounts]:
    """Contract order by exact score desc, then post_id asc; posts with no event dropped."""
    live = [p for p in posts if p.views + p.likes + p.comments + p.shares > 0]
    return sorted(live, key=lambda p: (-exact_score(p), p.post_id))[:k]


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(counts, counts, counts, counts)
def test_rank_value_is_ten_times_the_score(v: int, li: int, c: int, s: int) -> None:
    """The integer key is exactly 10 x score and the published score is its nearest float."""
    rank = rank_value(v, li, c, s)
    assert Fraction(rank, 10) == exact_score(PostCounts(1, v, li, c, s))
    assert score_of_rank(rank) == float(Fraction(rank, 10))


def test_score_examples_from_the_contract() -> None:
    """`views x 0.1 + likes x 2 + comments x 3 + shares x 5`: 123/10/5/4 -> 67.3.

    (The contract's sample payload shows 57.3 for these counters; the formula gives 67.3.)
    """
    p = PostCounts(123, views=123, likes=10, comments=5, shares=4)
    assert p.rank == 673
    assert p.score == 67.3
    assert PostCounts(1, views=1).score == 0.1
    assert PostCounts(1, views=3).score == 0.3  # not 0.30000000000000004


def test_ties_break_by_post_id_ascending() -> None:
    """Equal rank (10 views == 1 share x 0.5 ... 50 views == 1 share): lower post_id first."""
    a = PostCounts(9, views=50)
    b = PostCounts(3, shares=1)
    c = PostCounts(5, likes=1, comments=1)  # 20 + 30 = 50 too
    assert [p.post_id for p in rank_posts([a, b, c], 10)] == [3, 5, 9]


def test_zero_count_posts_are_excluded_and_empty_input_is_empty() -> None:
    """A post with no counted event never appears; no posts gives []."""
    assert rank_posts([PostCounts(1), PostCounts(2, views=1)], 5) == [PostCounts(2, views=1)]
    assert rank_posts([], 5) == []
    assert rank_posts([PostCounts(1)], 5) == []


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.lists(post_counts(post_ids), unique_by=lambda p: p.post_id), st.integers(1, 60))
def test_rank_posts_matches_oracle(posts: list[PostCounts], k: int) -> None:
    """rank_posts == sorted by exact score desc, post_id asc, first k, zero posts dropped."""
    assert rank_posts(posts, k) == oracle_rank(posts, k)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.lists(post_counts(), unique_by=lambda p: p.post_id), st.integers(1, 40))
def test_rank_posts_with_many_ties(posts: list[PostCounts], k: int) -> None:
    """Same with a small id space and small counters (ties everywhere)."""
    assert rank_posts(posts, k) == oracle_rank(posts, k)


def test_payload_round_trip() -> None:
    """to_payload has the contract's fields; from_payload reads it back."""
    p = PostCounts(123, 123, 10, 5, 4)
    assert p.to_payload() == {
        "post_id": 123, "score": 67.3, "views": 123, "likes": 10, "comments": 5, "shares": 4,
    }
    assert PostCounts.from_payload(p.to_payload()) == p


# ---- merge_partials -----------------------------------------------------------------------


@st.composite
def disjoint_partitions(draw: st.DrawFn) -> list[list[PostCounts]]:
    """Posts split over partitions, each post in exactly one partition (as the contract says)."""
    posts = draw(st.lists(post_counts(), unique_by=lambda p: p.post_id))
    n = draw(st.integers(min_value=1, max_value=4))
    parts: list[list[PostCounts]] = [[] for _ in range(n)]
    for p in posts:
        parts[draw(st.integers(min_value=0, max_value=n - 1))].append(p)
    return parts


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(disjoint_partitions(), st.integers(min_value=1, max_value=30))
def test_merge_partials_is_topk_of_union(parts: list[list[PostCounts]], k: int) -> None:
    """Merging each partition's own top-k == top-k of the union of all posts."""
    partial_tops = [rank_posts(part, k) for part in parts]
    union = [p for part in parts for p in part]
    assert merge_partials(partial_tops, k) == oracle_rank(union, k)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(disjoint_partitions(), st.integers(min_value=1, max_value=30))
def test_merge_partials_ignores_repeats_and_zero_rows(
    parts: list[list[PostCounts]], k: int
) -> None:
    """A post repeated across partials (a stale copy) keeps its best counts; zero rows drop."""
    partial_tops = [rank_posts(part, k) for part in parts]
    stale = [PostCounts(p.post_id) for part in partial_tops for p in part]
    union = [p for part in parts for p in part]
    assert merge_partials([*partial_tops, stale, partial_tops[0]], k) == oracle_rank(union, k)
