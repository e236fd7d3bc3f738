"""Pure reconciliation: measures, comparison and drift policy."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.reconcile import (
    DriftPolicy,
    ReconcileReport,
    StreamSnapshot,
    compare,
    cut_bound,
    is_drift,
    rank_agreement,
    same_position_share,
    topk_overlap,
)
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import Window

WINDOW = Window(60_000 * 1000, 60_000 * 1060)
PARTITIONS = 4

counters = st.tuples(*(st.integers(0, 30) for _ in range(4)))
count_maps = st.dictionaries(st.integers(0, 200), counters, max_size=60)


def posts_of(counts: dict[int, tuple[int, int, int, int]]) -> list[PostCounts]:
    """PostCounts for every post with at least one event."""
    return [PostCounts(pid, *c) for pid, c in counts.items() if any(c)]


def snapshot_of(posts: list[PostCounts], depth: int, events: int = 0) -> StreamSnapshot:
    """What a merger builds: union of each partition's top-depth (partition = post_id % 4)."""
    union: list[PostCounts] = []
    for part in range(PARTITIONS):
        union += rank_posts([p for p in posts if p.post_id % PARTITIONS == part], depth)
    return StreamSnapshot(WINDOW, union, events, list(range(PARTITIONS)), [], depth)


def reconcile(stream: list[PostCounts], ch: list[PostCounts], k: int, depth: int,
              stream_events: int = 0, ch_events: int = 0) -> ReconcileReport:
    """compare() fed the way the Reconciler feeds it."""
    snap = snapshot_of(stream, depth, stream_events)
    ch_top = rank_posts(ch, k)
    ids = {p.post_id for p in ch_top} | {p.post_id for p in rank_posts(snap.posts, k)}
    counts = [p for p in ch if p.post_id in ids]
    return compare(snap, ch_top, counts, ch_events, k=k, generated_at_ms=1)


class TestMeasures:
    """Overlap, rank agreement and position share are bounded and exact on known cases."""

    @settings(deadline=None)  # shared 2-core machine: no per-example deadline
    @given(st.lists(st.integers(0, 50), unique=True), st.lists(st.integers(0, 50), unique=True))
    def test_overlap_is_symmetric_and_bounded(self, a: list[int], b: list[int]) -> None:
        """Overlap is in [0, 1], symmetric, and 1 for a list with itself."""
        assert 0.0 <= topk_overlap(a, b) <= 1.0
        assert topk_overlap(a, b) == topk_overlap(b, a)
        assert topk_overlap(a, a) == 1.0

    @settings(deadline=None)  # shared 2-core machine: no per-example deadline
    @given(st.permutations(list(range(12))), st.permutations(list(range(12))))
    def test_rank_agreement_matches_pair_count(self, a: list[int], b: list[int]) -> None:
        """Rank agreement equals the brute-force share of concordant pairs."""
        pos_a = {x: i for i, x in enumerate(a)}
        pos_b = {x: i for i, x in enumerate(b)}
        pairs = list(combinations(a, 2))
        same = sum((pos_a[x] < pos_a[y]) == (pos_b[x] < pos_b[y]) for x, y in pairs)
        assert abs(rank_agreement(a, b) - same / len(pairs)) < 1e-12

    def test_rank_agreement_extremes(self) -> None:
        """Same order is 1, reversed order is 0, fewer than two common posts is 1."""
        assert rank_agreement([1, 2, 3], [1, 2, 3]) == 1.0
        assert rank_agreement([1, 2, 3], [3, 2, 1]) == 0.0
        assert rank_agreement([1, 2], [2, 5]) == 1.0

    def test_same_position_share_counts_equal_places(self) -> None:
        """Equal places over the longer list's length."""
        assert same_position_share([1, 2, 3, 4], [1, 3, 2, 4]) == 0.5
        assert same_position_share([], []) == 1.0
        assert same_position_share([1], [1, 2]) == 0.5

    @settings(deadline=None)  # shared 2-core machine: no per-example deadline
    @given(count_maps, st.integers(1, 8))
    def test_cut_bound_is_an_upper_bound_for_absent_posts(
        self, counts: dict[int, tuple[int, int, int, int]], depth: int
    ) -> None:
        """No post missing from the union of top-depth lists ranks above the bound."""
        posts = posts_of(counts)
        snap = snapshot_of(posts, depth)
        present = {p.post_id for p in snap.posts}
        bound = cut_bound(snap.posts, depth)
        assert all(p.rank <= bound for p in posts if p.post_id not in present)


class TestCompare:
    """A clean snapshot agrees exactly; differences name the right posts and deltas."""

    @settings(deadline=None)  # shared 2-core machine: no per-example deadline
    @given(count_maps, st.integers(1, 10), st.integers(0, 10_000))
    def test_same_counts_agree_exactly(
        self, counts: dict[int, tuple[int, int, int, int]], k: int, events: int
    ) -> None:
        """Stream and ClickHouse with the same events: overlap 1.0, every delta 0."""
        posts = posts_of(counts)
        report = reconcile(posts, posts, k, 2 * k, events, events)
        assert report.topk_overlap == 1.0
        assert report.rank_agreement == 1.0
        assert report.max_score_delta == 0.0
        assert report.differences == []
        assert report.agrees
        assert report.stream_topk == [p.post_id for p in rank_posts(posts, k)]

    @settings(max_examples=200, deadline=None)  # shared 2-core machine: no per-example deadline
    @given(count_maps, st.integers(0, 200), st.integers(1, 4), st.integers(1, 10))
    def test_extra_clickhouse_views_are_reported(
        self, counts: dict[int, tuple[int, int, int, int]], post: int, extra: int, k: int
    ) -> None:
        """Views only ClickHouse has show up on that post (or it is reported absent)."""
        stream = posts_of(counts)
        base = counts.get(post, (0, 0, 0, 0))
        ch_counts = {**counts, post: (base[0] + extra, *base[1:])}
        report = reconcile(stream, posts_of(ch_counts), k, 2 * k, 100, 100 + extra)
        in_lists = post in set(report.stream_topk) | set(report.clickhouse_topk)
        diffs = {d.post_id: d for d in report.differences}
        assert set(diffs) <= {post} | {d for d in diffs if diffs[d].stream is None}
        if in_lists:
            diff = diffs[post]
            if diff.stream is not None:
                assert diff.to_payload()["delta"]["views"] == -extra
                assert report.max_score_delta == extra / 10
            else:
                assert diff.to_payload()["stream_absent"] is True
        assert report.to_payload()["events"]["only_in_clickhouse"] == extra

    def test_absent_post_is_reported_with_its_bound_not_as_zero(self) -> None:
        """A ClickHouse top post missing from the snapshot is flagged absent with a cut bound."""
        stream = [PostCounts(i, views=100 - i) for i in range(8)]  # all in partition lists
        ch = [*stream, PostCounts(40, likes=50)]  # rank 1000, stream never saw it
        report = reconcile(stream, ch, k=2, depth=2)
        (diff,) = [d for d in report.differences if d.post_id == 40]
        payload = diff.to_payload()
        assert payload["stream"] is None and payload["stream_absent"] is True
        assert payload["clickhouse_position"] == 1
        bound = cut_bound(snapshot_of(stream, 2).posts, 2)
        assert payload["stream_score_at_most"] == bound / 10
        assert report.max_score_delta == (1000 - bound) / 10
        assert report.max_score_delta_post == 40

    def test_stream_only_counts_show_positive_delta(self) -> None:
        """A post the stream over-counts has a positive delta and stream-only events."""
        ch = [PostCounts(1, views=10), PostCounts(2, likes=3)]
        stream = [PostCounts(1, views=10), PostCounts(2, likes=3, shares=1)]
        report = reconcile(stream, ch, k=5, depth=10, stream_events=15, ch_events=14)
        (diff,) = report.differences
        assert diff.post_id == 2 and diff.to_payload()["delta"]["shares"] == 1
        assert diff.score_delta == 5.0
        assert report.to_payload()["events"]["only_in_stream"] == 1

    def test_incomplete_snapshot_is_not_judged(self) -> None:
        """Missing partitions: reported, but neither drift nor agreement is claimed."""
        snap = StreamSnapshot(WINDOW, [PostCounts(1, 1)], 1, [0, 1], [2, 3])
        report = compare(snap, [PostCounts(1, 1)], [], 1, k=5, generated_at_ms=1)
        assert not report.complete
        assert is_drift(report, 0.0, 1.0) is None

    def test_payload_has_bounds_and_time(self) -> None:
        """The Redis JSON carries window bounds, the time and the measures."""
        payload = reconcile([PostCounts(1, 2)], [PostCounts(1, 2)], 3, 6).to_payload()
        assert payload["window_start_ms"] == WINDOW.start_ms
        assert payload["window_end_ms"] == WINDOW.end_ms
        assert payload["generated_at_ms"] == 1
        assert payload["topk_overlap"] == 1.0 and payload["agrees"] is True


class TestDriftPolicy:
    """N drifted runs in a row switch to ClickHouse; the first agreeing run switches back."""

    @settings(deadline=None)  # shared 2-core machine: no per-example deadline
    @given(st.lists(st.sampled_from([True, False, None]), max_size=30), st.integers(1, 4))
    def test_matches_reference_model(self, runs: list[bool | None], n: int) -> None:
        """Switched on by n drifted judged runs in a row, kept while drifting, off on agreement."""
        policy = DriftPolicy(n)
        streak, on = 0, False
        for drifted in runs:
            policy.observe(drifted)
            if drifted is None:
                continue
            streak = streak + 1 if drifted else 0
            on = streak >= n or (on and drifted)
            assert policy.use_clickhouse == on
            assert policy.mode == ("clickhouse" if on else "stream")

    def test_switch_and_back(self) -> None:
        """Two drifted runs switch, an unjudged run changes nothing, an agreeing run returns."""
        policy = DriftPolicy(2)
        assert policy.observe(True) is False and not policy.use_clickhouse
        assert policy.observe(True) is True and policy.use_clickhouse
        assert policy.observe(None) is False and policy.use_clickhouse
        assert policy.observe(False) is True and not policy.use_clickhouse

    def test_threshold_and_overlap(self) -> None:
        """Deltas up to the threshold are tolerated; low overlap is drift on its own."""
        report = reconcile([PostCounts(1, 10)], [PostCounts(1, 11)], 3, 6)
        assert is_drift(report, 0.0, 1.0) is True
        assert is_drift(report, 0.1, 1.0) is False
        disjoint = reconcile([PostCounts(1, 10)], [PostCounts(2, 10)], 1, 2)
        assert is_drift(disjoint, 100.0, 1.0) is True
        assert is_drift(disjoint, 100.0, 0.0) is False
