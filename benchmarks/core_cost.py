"""Scenario 2: the pure core's ingest rate and publish (merge) cost against naive baselines."""

from __future__ import annotations

import gc
from collections.abc import Callable

from benchmarks.common import (
    Context,
    Plot,
    Row,
    ScenarioResult,
    Target,
    paired,
    profile_top,
    timed,
    write_profile,
)
from benchmarks.workloads import (
    NOW_MS,
    build_partitions,
    core_ingest,
    event_tuples,
    full_sort_publish,
    naive_ingest,
    stream_publish,
)
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow

PUBLISH_TARGET_MS = 50.0


def run(ctx: Context) -> ScenarioResult:
    """Ingest events/s vs dict counter; publish ms vs posts and partitions vs full sort."""
    res = ScenarioResult("core", "Core cost (pure PartitionWindow + DedupIndex + TopKIndex)")
    _ingest(ctx, res)
    _publish(ctx, res)
    return res


def _ingest(ctx: Context, res: ScenarioResult) -> None:
    count = ctx.size(20_000, 400_000)
    ctx.step(f"generating {count:,} events")
    events = event_tuples(count, posts=max(1000, count // 10))
    ctx.step("core ingest vs dict counter")
    core_s, naive_s = paired(lambda: core_ingest(events), lambda: naive_ingest(events), ctx.size(2, 3))
    res.add(
        Row(
            "core ingest rate",
            count / core_s,
            "events/s",
            "dict counter + id set",
            count / naive_s,
            note=f"{count:,} events over {count // 10:,} posts, 1 partition, decode excluded",
        )
    )
    path = write_profile(ctx, "core_ingest", profile_top(lambda: core_ingest(events)))
    res.notes.append(f"Ingest profile (cProfile, tottime): `{path}`.")


def _publish(ctx: Context, res: ScenarioResult) -> None:
    sizes = [2_000, 10_000] if ctx.smoke else [10_000, 100_000, 1_000_000]
    partition_counts = [1, 8] if ctx.smoke else [1, 8, 32]
    plot = Plot("core_publish", "Publish of the global top-50", "active posts", "ms", logx=True, logy=True)
    for partitions in partition_counts:
        for posts in sizes:
            ctx.step(f"publish: {posts:,} posts in {partitions} partitions")
            parts = build_partitions(posts, partitions, spread_minutes=60)
            assert stream_publish(parts) == full_sort_publish(parts), "indexed publish != full sort"
            pub_s, sort_s = paired(_bind(stream_publish, parts), _bind(full_sort_publish, parts), 5)
            plot.series.setdefault(f"top-50/partition + merge, {partitions}p", []).append(
                (posts, pub_s * 1e3)
            )
            plot.series.setdefault(f"full sort baseline, {partitions}p", []).append((posts, sort_s * 1e3))
            big = posts == sizes[-1] and partitions == 8
            target = Target("value<=", PUBLISH_TARGET_MS) if big else None
            res.add(
                Row(
                    f"publish top-50, {posts:,} posts, {partitions} partitions",
                    pub_s * 1e3,
                    "ms",
                    "full sort",
                    sort_s * 1e3,
                    target,
                )
            )
            if big:
                _advance(ctx, res, parts, posts, sort_s)
            del parts
            gc.collect()
    res.plots.append(plot)


def _advance(
    ctx: Context, res: ScenarioResult, parts: list[PartitionWindow], posts: int, sort_s: float
) -> None:
    """Expiring one minute (1/60 of the buckets) is the other half of a publish tick."""
    path = write_profile(ctx, "core_publish", profile_top(lambda: stream_publish(parts)))
    res.notes.append(f"Publish profile at {posts:,} posts / 8 partitions: `{path}`.")
    advance_s = timed(lambda: [p.advance(NOW_MS + MINUTE_MS) for p in parts])
    advance_profile = profile_top(lambda: [p.advance(NOW_MS + 2 * MINUTE_MS) for p in parts])
    path = write_profile(ctx, "core_advance", advance_profile)
    res.notes.append(f"Window advance profile (expiring one minute of {posts:,} posts): `{path}`.")
    res.add(
        Row(
            f"advance window 1 min, {posts:,} posts, 8 partitions",
            advance_s * 1e3,
            "ms",
            "full sort",
            sort_s * 1e3,
            note="expires ~1/60 of the buckets; runs once per publish tick",
        )
    )


Parts = list[PartitionWindow]


def _bind(fn: Callable[[Parts], object], parts: Parts) -> Callable[[], object]:
    """A zero-argument call of fn(parts) for the timers."""
    return lambda: fn(parts)
