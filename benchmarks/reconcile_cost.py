"""Reconcile cost: one Reconciler run over a window holding N events, in embedded ClickHouse.

    .venv/bin/python benchmarks/reconcile_cost.py --events 1000000

Loads N distinct events (plus 1% repeated rows) into a fresh chDB directory with a skewed
post distribution, builds the stream snapshot a correct stream would hand over (per-partition
top-2K, from the same data), then times `Reconciler.run` (flush wait set to 0) and its three
ClickHouse queries separately. Needs `redis-server` (started on a free port).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.clock import wall_ms
from streamer.core.reconcile import StreamSnapshot
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, complete_window_at
from streamer.demo.services import start_redis
from streamer.jobs.reconcile import Reconciler
from streamer.settings.model import Settings, load_settings

PARTITIONS = 4

_LOAD = """
INSERT INTO {db}.post_events (event_id, post_id, user_id, event_type, event_time)
SELECT toString(if(number >= {n}, number - {n}, number)) AS event_id,
       toUInt64(floor(pow((cityHash64(number % {n}, 1) % 1000000) / 1000000.0, 3) * {posts})),
       cityHash64(number % {n}, 2) % 100000,
       multiIf(h < 70, 'view', h < 90, 'like', h < 97, 'comment', 'share'),
       fromUnixTimestamp64Milli(toInt64({start} + cityHash64(number % {n}, 4) % {span}), 'UTC')
FROM (SELECT number, cityHash64(number % {n}, 3) % 100 AS h FROM numbers({rows}))
"""


async def load(ch: ClickHouse, window: Window, n: int, posts: int) -> None:
    """N distinct events over the window, plus n/100 repeated rows (same event_id)."""
    sql = _LOAD.format(db=ch.database, n=n, posts=posts, start=window.start_ms,
                       span=window.end_ms - window.start_ms, rows=n + n // 100)
    await ch.command(sql)


async def stream_snapshot(ch: ClickHouse, window: Window, depth: int) -> StreamSnapshot:
    """What a correct stream hands over: each partition's exact top-depth over the window."""
    everything = await queries.trending(ch, window, 10_000_000)
    union: list[PostCounts] = []
    for part in range(PARTITIONS):
        union += rank_posts([p for p in everything if p.post_id % PARTITIONS == part], depth)
    events = await queries.distinct_events(ch, window)
    return StreamSnapshot(window, union, events, list(range(PARTITIONS)), [])


async def timed(label: str, repeat: int, fn: Callable[[], Awaitable[object]]) -> list[float]:
    """Run an async callable `repeat` times; print and return the durations."""
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - started)
    print(f"{label:<34} median {statistics.median(out):7.3f}s  "
          f"min {min(out):7.3f}s  max {max(out):7.3f}s  ({repeat} runs)")
    return out


async def bench(settings: Settings, args: argparse.Namespace) -> None:
    """Load, build the snapshot, time the pieces and the whole run."""
    ch = ClickHouse(settings.clickhouse_dsn, settings.clickhouse_database, 600_000)
    await create_schema(ch)
    window = complete_window_at(wall_ms(), settings.window_minutes)
    started = time.perf_counter()
    await load(ch, window, args.events, args.posts)
    print(f"loaded {args.events:,} events (+{args.events // 100:,} repeated rows) "
          f"in {time.perf_counter() - started:.1f}s; window {window.start_ms}..{window.end_ms} "
          f"({(window.end_ms - window.start_ms) // MINUTE_MS} min)")
    k = settings.job_trending_topk
    snapshot = await stream_snapshot(ch, window, 2 * k)
    print(f"snapshot: {len(snapshot.posts):,} posts, {snapshot.events:,} events")
    redis = Redis.from_url(settings.redis_url)
    rec = Reconciler(settings, ch, redis, flush_wait_s=0.0)
    ids = [p.post_id for p in rank_posts(snapshot.posts, k)]
    await timed("queries.trending (top-K)", args.repeat, lambda: queries.trending(ch, window, k))
    await timed("queries.post_counts (<=2K posts)", args.repeat,
                lambda: queries.post_counts(ch, window, ids))
    await timed("queries.distinct_events", args.repeat, lambda: queries.distinct_events(ch, window))
    runs = await timed("Reconciler.run (no flush wait)", args.repeat, lambda: rec.run(snapshot))
    report = rec.last_report
    assert report is not None and report.agrees, "a clean snapshot must reconcile exactly"
    print(f"report: overlap={report.topk_overlap} max_score_delta={report.max_score_delta} "
          f"events={report.clickhouse_events:,}")
    print(f"RECONCILE COST at {args.events:,} events: median {statistics.median(runs):.3f}s "
          f"+ flush wait {settings.streamer_sink_flush_ms / 1000 + 2.0:.1f}s (sleep, not work)")
    await redis.aclose()


def main() -> None:
    """Parse arguments, start a private Redis and a fresh chDB directory, run the benchmark."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--posts", type=int, default=50_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dir", type=Path, default=None, help="chDB directory (default: a temp dir)")
    args = p.parse_args()
    redis_svc = start_redis()
    tmp = tempfile.TemporaryDirectory(prefix="reconcile-bench-")
    path = (args.dir or Path(tmp.name)).resolve()
    try:
        settings = load_settings({"REDIS_URL": f"redis://127.0.0.1:{redis_svc.port}/0",
                                  "CLICKHOUSE_URL": f"chdb://{path}",
                                  "STREAMER_DATA_DIR": str(path)})
        asyncio.run(bench(settings, args))
    finally:
        redis_svc.stop()
        tmp.cleanup()


if __name__ == "__main__":
    main()
