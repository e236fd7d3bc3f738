"""Scenario 3: ClickHouse's trending query (embedded chDB) over 1M-20M rows vs the stream's publish."""

from __future__ import annotations

import asyncio
import time

from benchmarks.common import Context, Plot, Row, ScenarioResult, Target, paired, timed
from benchmarks.workloads import NOW_MS, TOPK, WINDOW_MINUTES, build_partitions, core_ingest, stream_publish
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.core.events import EVENT_TYPE_INDEX
from streamer.core.window import MINUTE_MS, window_at

DATABASE = "bench_batch"
POSTS = 500_000
USERS = 200_000
SPAN_MS = (WINDOW_MINUTES - 1) * MINUTE_MS
# Rows are pure functions of `number`; every 100th row repeats the previous event exactly
# (a producer retry), so the query's dedup has work to do.
_INSERT = """
INSERT INTO {db}.post_events (event_id, post_id, user_id, event_type, event_time)
SELECT lower(hex(cityHash64(base, 1))) || lower(hex(cityHash64(base, 2))),
       toUInt64(floor(exp(log({posts}) * (cityHash64(base, 3) % 1000000) / 1000000))),
       cityHash64(base, 4) % {users},
       multiIf(cityHash64(base, 5) % 100 < 80, 'view', cityHash64(base, 5) % 100 < 92, 'like',
               cityHash64(base, 5) % 100 < 97, 'comment', 'share'),
       fromUnixTimestamp64Milli(toInt64({now_ms} - cityHash64(base, 6) % {span_ms}), 'UTC')
FROM (SELECT if(number % 100 = 99, number - 1, number) AS base FROM numbers({start}, {count}))
"""


def run(ctx: Context) -> ScenarioResult:
    """Batch query time vs rows beside the incremental publish over the same active posts."""
    return asyncio.run(_run(ctx))


async def _run(ctx: Context) -> ScenarioResult:
    res = ScenarioResult("batch", "Batch (ClickHouse query) vs incremental (stream publish)")
    ch = ClickHouse(f"chdb://{ctx.work_dir / 'chdb'}", DATABASE, timeout_ms=900_000)
    await create_schema(ch)
    await ch.command(f"TRUNCATE TABLE IF EXISTS {DATABASE}.post_events")
    sizes = [50_000, 200_000] if ctx.smoke else [1_000_000, 5_000_000, 20_000_000]
    plot = Plot(
        "batch_vs_stream",
        "Trending refresh: batch query vs stream publish",
        "rows in window",
        "ms",
        logx=True,
        logy=True,
    )
    loaded = 0
    for rows in sizes:
        ctx.step(f"loading {rows:,} rows via INSERT ... SELECT FROM numbers()")
        load_s = await _load(ch, loaded, rows - loaded)
        loaded = rows
        query_s, publish_s, posts = await _measure(ctx, ch, rows)
        plot.series.setdefault("ClickHouse trending query", []).append((rows, query_s * 1e3))
        plot.series.setdefault("stream publish baseline (8 partitions)", []).append((rows, publish_s * 1e3))
        res.add(
            Row(
                f"ClickHouse trending, {rows:,} rows ({posts:,} posts)",
                query_s * 1e3,
                "ms",
                "stream publish, same posts, 8 partitions",
                publish_s * 1e3,
                note=f"load {rows / max(load_s, 1e-9):,.0f} rows/s (last step)",
            )
        )
        if rows == sizes[0]:
            await _cross_check(ctx, ch, res)
    res.plots.append(plot)
    _break_even(res, ctx)
    return res


async def _load(ch: ClickHouse, start: int, count: int) -> float:
    began = time.perf_counter()
    await ch.command(
        _INSERT.format(
            db=DATABASE, posts=POSTS, users=USERS, now_ms=NOW_MS, span_ms=SPAN_MS, start=start, count=count
        )
    )
    return time.perf_counter() - began


async def _measure(ctx: Context, ch: ClickHouse, rows: int) -> tuple[float, float, int]:
    window = window_at(NOW_MS, WINDOW_MINUTES)
    ctx.step(f"ClickHouse trending over {rows:,} rows")
    times = []
    for _ in range(ctx.size(2, 3)):
        began = time.perf_counter()
        await queries.trending(ch, window, TOPK)
        times.append(time.perf_counter() - began)
    posts = int((await ch.rows(f"SELECT uniqExact(post_id) FROM {DATABASE}.post_events"))[0][0])
    ctx.step(f"stream publish over {posts:,} posts")
    parts = build_partitions(posts, 8)
    publish_s, _ = paired(lambda: stream_publish(parts), lambda: None, 5)
    return min(times), publish_s, posts


async def _cross_check(ctx: Context, ch: ClickHouse, res: ScenarioResult) -> None:
    """Both modes must agree: replay the table through the core and compare the top-50."""
    ctx.step("cross-check: replaying the table through the core")
    window = window_at(NOW_MS, WINDOW_MINUTES)
    sql = (
        "SELECT event_id, post_id, event_type, toUnixTimestamp64Milli(event_time) "
        f"FROM {DATABASE}.post_events"
    )
    events = [(str(e), int(p), EVENT_TYPE_INDEX[str(t)], int(ts)) for e, p, t, ts in await ch.rows(sql)]
    state: list[object] = []
    core_s = timed(lambda: state.append(core_ingest(events)))
    stream_top = stream_publish([state[0][0]])  # type: ignore[index]
    batch_top = await queries.trending(ch, window, TOPK)
    same = stream_top == batch_top
    res.add(
        Row(
            f"stream core == ClickHouse top-{TOPK} on {len(events):,} rows",
            float(same),
            "bool",
            target=Target("value>=", 1),
            note=f"core replay at {len(events) / core_s:,.0f} events/s",
        )
    )
    if not same:
        res.status = "ok (MISMATCH: stream core and ClickHouse disagree)"
    res.notes.append(f"Core ingest at {len(events) / core_s:,.0f} events/s during the replay.")
    ctx.facts["core_rate"] = len(events) / core_s


def _break_even(res: ScenarioResult, ctx: Context) -> None:
    """When does streaming pay off? CPU share of one core for a 60 s refresh of a 60 min window."""
    core_us = 1e6 / (ctx.facts.get("core_rate", 0.0) or 1.0)
    for row in res.rows:
        if not row.metric.startswith("ClickHouse trending"):
            continue
        n = int(row.metric.split(", ", 1)[1].split(" rows")[0].replace(",", ""))
        batch_share = row.value / 1e3 / 60
        stream_share = n / 3600 * core_us / 1e6
        res.notes.append(
            f"{n:,} events per hour: batch refresh every 60 s uses {100 * batch_share:.1f}% of a core "
            f"({row.value:,.0f} ms per query, result as stale as that); the stream core uses "
            f"{100 * stream_share:.1f}% ({n / 3600:,.0f} events/s x {core_us:.1f} µs) and publishes in "
            f"{row.baseline_value or 0:.1f} ms."
        )
