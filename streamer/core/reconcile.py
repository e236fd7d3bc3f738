"""Pure reconciliation: the one stream snapshot type, its comparison with ClickHouse, drift policy."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from streamer.core.scoring import PostCounts, merge_partials, rank_posts, score_of_rank
from streamer.core.window import Window

# ---- input ------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamSnapshot:
    """What the stream counted over one complete-minute window: one partition's answer
    (`PartitionState.complete_partial`) or the merger's union of all of them."""

    window: Window  # complete minutes only: core.window.complete_window_at(now)
    posts: list[PostCounts]  # union of each partition's top-`depth` for that window, exact counts
    events: int  # events the stream counted in that window (all posts)
    partitions: list[int]
    missing_partitions: list[int]
    depth: int | None = None  # per-partition list length; None = 2 x JOB_TRENDING_TOPK
    # Next Kafka offset the stream had read per partition (-1: unknown); ClickHouse then counts
    # only rows the stream could have seen, so in-flight and out-of-order events are not drift.
    offsets: list[int] | None = None

    @property
    def complete(self) -> bool:
        """True when every partition's state went into the snapshot."""
        return not self.missing_partitions


# ---- output -----------------------------------------------------------------------------


def _counts_payload(p: PostCounts) -> dict[str, Any]:
    return {"views": p.views, "likes": p.likes, "comments": p.comments, "shares": p.shares,
            "score": p.score}


@dataclass(frozen=True, slots=True)
class PostDiff:
    """One post of either top-K whose stream and ClickHouse counters differ (or is unknown)."""

    post_id: int
    stream_position: int | None  # 1-based place in the stream top-K, None when not in it
    clickhouse_position: int | None  # 1-based place in the ClickHouse top-K
    stream: PostCounts | None  # None: not in the snapshot (below its partition's cut)
    clickhouse: PostCounts
    stream_rank_at_most: int | None  # for absent posts: the cut bound (x10 score), None if unknown

    @property
    def score_delta(self) -> float | None:
        """Stream score minus ClickHouse score; None when the stream count is unknown."""
        if self.stream is None:
            return None
        return score_of_rank(self.stream.rank - self.clickhouse.rank)

    @property
    def abs_delta_at_least(self) -> float:
        """|score delta|, or for an absent post the smallest it can be given the cut bound."""
        if self.stream is not None:
            return score_of_rank(abs(self.stream.rank - self.clickhouse.rank))
        if self.stream_rank_at_most is None:
            return 0.0
        return score_of_rank(max(0, self.clickhouse.rank - self.stream_rank_at_most))

    def to_payload(self) -> dict[str, Any]:
        """JSON object of one difference."""
        s, c = self.stream, self.clickhouse
        out: dict[str, Any] = {
            "post_id": self.post_id,
            "stream_position": self.stream_position,
            "clickhouse_position": self.clickhouse_position,
            "stream": None if s is None else _counts_payload(s),
            "clickhouse": _counts_payload(c),
            "stream_absent": s is None,
        }
        if s is not None:
            out["delta"] = {
                "views": s.views - c.views, "likes": s.likes - c.likes,
                "comments": s.comments - c.comments, "shares": s.shares - c.shares,
                "score": self.score_delta,
            }
        else:
            bound = self.stream_rank_at_most
            out["stream_score_at_most"] = None if bound is None else score_of_rank(bound)
            out["abs_score_delta_at_least"] = self.abs_delta_at_least
        return out


@dataclass(frozen=True)
class ReconcileReport:
    """Stream vs ClickHouse over one window; policy fields are filled in by the Reconciler."""

    generated_at_ms: int
    window: Window
    k: int
    depth: int
    partitions: list[int]
    missing_partitions: list[int]
    stream_topk: list[int]
    clickhouse_topk: list[int]
    topk_overlap: float
    rank_agreement: float
    same_position_share: float
    max_score_delta: float
    max_score_delta_post: int | None
    differences: list[PostDiff]
    posts_compared: int
    stream_events: int
    clickhouse_events: int
    drifted: bool | None = None  # None: not judged (snapshot incomplete)
    consecutive_drift_runs: int = 0
    mode: str = "stream"
    duration_s: float = 0.0

    @property
    def complete(self) -> bool:
        """True when the stream side covered every partition."""
        return not self.missing_partitions

    @property
    def agrees(self) -> bool:
        """Exact agreement: same top-K in the same order, every delta 0, same event count."""
        return (self.topk_overlap == 1.0 and self.rank_agreement == 1.0
                and self.max_score_delta == 0.0 and not self.differences
                and self.stream_events == self.clickhouse_events)

    def to_payload(self) -> dict[str, Any]:
        """The JSON object written to `nova:cache:trending:{h}h:reconcile`."""
        return {
            "generated_at_ms": self.generated_at_ms,
            "window_start_ms": self.window.start_ms,
            "window_end_ms": self.window.end_ms,
            "k": self.k, "depth": self.depth,
            "partitions": sorted(self.partitions),
            "missing_partitions": sorted(self.missing_partitions),
            "complete": self.complete,
            "agrees": self.agrees,
            "topk_overlap": self.topk_overlap,
            "rank_agreement": self.rank_agreement,
            "same_position_share": self.same_position_share,
            "max_score_delta": self.max_score_delta,
            "max_score_delta_post": self.max_score_delta_post,
            "posts_compared": self.posts_compared,
            "differences": [d.to_payload() for d in self.differences],
            "events": {
                "stream": self.stream_events,
                "clickhouse": self.clickhouse_events,
                "only_in_stream": max(0, self.stream_events - self.clickhouse_events),
                "only_in_clickhouse": max(0, self.clickhouse_events - self.stream_events),
            },
            "stream_topk": self.stream_topk,
            "clickhouse_topk": self.clickhouse_topk,
            "drifted": self.drifted,
            "consecutive_drift_runs": self.consecutive_drift_runs,
            "mode": self.mode,
            "duration_s": round(self.duration_s, 3),
        }

    def log_line(self) -> str:
        """One human line for the log."""
        drift = "n/a" if self.drifted is None else ("yes" if self.drifted else "no")
        return (
            f"reconcile [{self.window.start_ms}, {self.window.end_ms}) "
            f"overlap={self.topk_overlap:.3f} rank_agreement={self.rank_agreement:.3f} "
            f"max_score_delta={self.max_score_delta:g} (post {self.max_score_delta_post}) "
            f"differences={len(self.differences)} events stream={self.stream_events} "
            f"clickhouse={self.clickhouse_events} complete={self.complete} drift={drift} "
            f"runs={self.consecutive_drift_runs} mode={self.mode} in {self.duration_s:.3f}s"
        )


# ---- measures ---------------------------------------------------------------------------


def topk_overlap(a: Sequence[int], b: Sequence[int]) -> float:
    """|A ∩ B| / max(|A|, |B|): 1.0 for the same set (also both empty), 0.0 for disjoint."""
    size = max(len(a), len(b))
    return 1.0 if size == 0 else len(set(a) & set(b)) / size


def rank_agreement(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of pairs of common posts ordered the same way in both lists (Kendall, 0..1)."""
    where = {pid: i for i, pid in enumerate(b)}
    order = [where[pid] for pid in a if pid in where]
    pairs = len(order) * (len(order) - 1) // 2
    if pairs == 0:
        return 1.0
    seen: list[int] = []
    inversions = 0
    for pos in order:
        inversions += len(seen) - bisect_right(seen, pos)
        insort(seen, pos)
    return 1.0 - inversions / pairs


def same_position_share(a: Sequence[int], b: Sequence[int]) -> float:
    """Share of places 1..max(|A|,|B|) holding the same post in both lists."""
    size = max(len(a), len(b))
    if size == 0:
        return 1.0
    return sum(1 for x, y in zip(a, b, strict=False) if x == y) / size


def cut_bound(posts: Sequence[PostCounts], depth: int) -> int:
    """Largest rank a post missing from the union of top-`depth` lists can have in the stream."""
    ranks = sorted((p.rank for p in posts if p.rank > 0), reverse=True)
    # A missing post ranks below all `depth` entries of its own partition's full list,
    # so at least `depth` posts of the union rank at or above it.
    return ranks[depth - 1] if len(ranks) >= depth else 0


def compare(
    snapshot: StreamSnapshot,
    clickhouse_top: Sequence[PostCounts],
    clickhouse_counts: Sequence[PostCounts],
    clickhouse_events: int,
    *,
    k: int,
    generated_at_ms: int,
) -> ReconcileReport:
    """Reconcile a stream snapshot against ClickHouse results over the same window."""
    depth = snapshot.depth or 2 * k
    if depth < k:
        raise ValueError(f"snapshot depth {depth} is smaller than k {k}")
    stream_top = [p.post_id for p in merge_partials([snapshot.posts], k)]
    ch_top = [p.post_id for p in rank_posts(list(clickhouse_top), k)]
    stream_by_id = {p.post_id: p for p in merge_partials([snapshot.posts], len(snapshot.posts))}
    ch_by_id: dict[int, PostCounts] = {p.post_id: p for p in clickhouse_counts}
    ch_by_id.update({p.post_id: p for p in clickhouse_top})
    bound = cut_bound(snapshot.posts, depth) if snapshot.complete else None
    diffs = _differences(stream_top, ch_top, stream_by_id, ch_by_id, bound)
    worst = max(diffs, key=lambda d: (d.abs_delta_at_least, -d.post_id), default=None)
    max_delta = worst.abs_delta_at_least if worst is not None else 0.0
    return ReconcileReport(
        generated_at_ms=generated_at_ms, window=snapshot.window, k=k, depth=depth,
        partitions=list(snapshot.partitions), missing_partitions=list(snapshot.missing_partitions),
        stream_topk=stream_top, clickhouse_topk=ch_top,
        topk_overlap=topk_overlap(stream_top, ch_top),
        rank_agreement=rank_agreement(stream_top, ch_top),
        same_position_share=same_position_share(stream_top, ch_top),
        max_score_delta=max_delta,
        max_score_delta_post=worst.post_id if worst is not None and max_delta > 0 else None,
        differences=diffs, posts_compared=len(set(stream_top) | set(ch_top)),
        stream_events=snapshot.events, clickhouse_events=clickhouse_events,
    )


def _differences(
    stream_top: Sequence[int],
    ch_top: Sequence[int],
    stream_by_id: Mapping[int, PostCounts],
    ch_by_id: Mapping[int, PostCounts],
    bound: int | None,
) -> list[PostDiff]:
    """Posts of either list whose counters differ, or whose stream count is unknown."""
    s_pos = {pid: i + 1 for i, pid in enumerate(stream_top)}
    c_pos = {pid: i + 1 for i, pid in enumerate(ch_top)}
    out: list[PostDiff] = []
    for pid in sorted(set(stream_top) | set(ch_top)):
        stream = stream_by_id.get(pid)
        ch = ch_by_id.get(pid, PostCounts(pid))
        if stream is not None and stream == ch:
            continue
        out.append(PostDiff(pid, s_pos.get(pid), c_pos.get(pid), stream, ch,
                            None if stream is not None else bound))
    return out


# ---- drift policy -----------------------------------------------------------------------


def is_drift(report: ReconcileReport, max_score_delta: float, min_overlap: float) -> bool | None:
    """Drift: a score differs by more than the threshold or the top-K sets overlap too little."""
    if not report.complete:
        return None
    return report.max_score_delta > max_score_delta or report.topk_overlap < min_overlap


@dataclass
class DriftPolicy:
    """Switch to ClickHouse after `runs` drifted runs in a row; back at the first agreeing run."""

    runs: int
    consecutive: int = 0
    use_clickhouse: bool = False
    history: list[bool | None] = field(default_factory=list)

    def observe(self, drifted: bool | None) -> bool:
        """Record one judged run (None = not judged, ignored); True when the mode changed."""
        self.history = [*self.history[-9:], drifted]
        if drifted is None:
            return False
        before = self.use_clickhouse
        self.consecutive = self.consecutive + 1 if drifted else 0
        if drifted and self.consecutive >= self.runs:
            self.use_clickhouse = True
        elif not drifted:
            self.use_clickhouse = False
        return before != self.use_clickhouse

    @property
    def mode(self) -> str:
        """`clickhouse` while drift forces ClickHouse results, else `stream`."""
        return "clickhouse" if self.use_clickhouse else "stream"

    def stamp(self, report: ReconcileReport, drifted: bool | None) -> ReconcileReport:
        """The report with the policy's verdict and state filled in."""
        return replace(report, drifted=drifted, consecutive_drift_runs=self.consecutive,
                       mode=self.mode)
