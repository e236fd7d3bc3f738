"""Small commands: check-config, schema, sample, top."""

from __future__ import annotations

import argparse
import os

import orjson
from rich.console import Console
from rich.table import Table

from streamer.cache.redis_client import make_redis
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.clock import wall_ms
from streamer.core.events import Event
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.demo.generate import events, follow_graph
from streamer.settings.file import origins, read_config_file
from streamer.settings.model import Settings
from streamer.trending.write import read_together

console = Console()


def check_config(settings: Settings) -> int:
    """Print the validated configuration with secrets masked, and where each value came from."""
    env = dict(os.environ)
    where = origins(env, read_config_file(env, Settings.model_fields), Settings.model_fields)
    table = Table(title="streamer configuration (valid)")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("source")
    for name, value in settings.masked().items():
        table.add_row(name, str(value), where.get(name, "derived"))
    console.print(table)
    return 0


async def schema(settings: Settings) -> int:
    """Create the database and tables if missing."""
    ch = ClickHouse.from_settings(settings)
    await create_schema(ch)
    console.print(f"schema ready in database [bold]{settings.clickhouse_database}[/]")
    return 0


async def sample(settings: Settings, args: argparse.Namespace) -> int:
    """Load a generated follow graph and events (last 2 hours) into ClickHouse."""
    ch = ClickHouse.from_settings(settings)
    await create_schema(ch)
    now_ms = wall_ms()
    with console.status("generating follow graph…"):
        edges = follow_graph(args.users, args.avg_follows)
        await queries.insert_follows(ch, [(a, b, now_ms) for a, b in edges])
    batch: list[Event] = []
    with console.status(f"loading {args.events:,} events…"):
        for ev in events(args.events, args.posts, args.users, now_ms, 2 * 3_600_000):
            batch.append(ev)
            if len(batch) >= 100_000:
                await queries.insert_events(ch, batch)
                batch = []
        await queries.insert_events(ch, batch)
    console.print(f"loaded {len(edges):,} follows and {args.events:,} events into ClickHouse")
    return 0


def trending_table(posts: list[PostCounts], title: str, limit: int = 50) -> Table:
    """Rich table of a trending list."""
    table = Table(title=title)
    for col in ("#", "post_id", "score", "views", "likes", "comments", "shares"):
        table.add_column(col, justify="right")
    for i, p in enumerate(posts[:limit], 1):
        table.add_row(str(i), str(p.post_id), f"{p.score:g}", str(p.views), str(p.likes),
                      str(p.comments), str(p.shares))
    return table


async def top(settings: Settings) -> int:
    """Print the trending list and meta from Redis."""
    redis = make_redis(settings)
    try:
        hours = settings.job_trending_window_hours
        raw, meta_raw = await read_together(redis, [trending_key(hours), trending_meta_key(hours)])
    finally:
        await redis.aclose()
    if raw is None:
        console.print(f"no trending value at {trending_key(hours)} (nothing published yet?)")
        return 1
    meta = orjson.loads(meta_raw) if meta_raw else {}
    posts = decode_trending(raw)
    console.print(trending_table(posts, f"{trending_key(hours)} ({len(posts)} posts)"))
    console.print_json(data=meta)
    return 0
