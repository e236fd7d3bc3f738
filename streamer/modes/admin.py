"""Small commands: check-config, schema, sample, top."""

from __future__ import annotations

import argparse
import os
import sys

import orjson
from redis.exceptions import RedisError
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
from streamer.demo.generate import events, load_graph_rows
from streamer.errors import StartError, UsageError
from streamer.redaction import mask_url
from streamer.settings.file import origins, read_config_file
from streamer.settings.model import Settings
from streamer.trending.write import read_together


class _PipeConsole(Console):
    """A console whose reader may go away (`streamer top | head`): stop writing, no traceback."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush fails quietly too


console = _PipeConsole()


def check_config(settings: Settings, fmt: str = "text") -> int:
    """Print the validated configuration, secrets masked, and where each value came from.

    Plain lines or JSON on stdout, never a table: the output is read through pipes
    (`kubectl exec ... -- streamer check-config`), where nothing may be cut.
    """
    env = dict(os.environ)
    where = origins(env, read_config_file(env, Settings.model_fields), Settings.model_fields)
    rows = {name: (value, where.get(name, "derived")) for name, value in settings.masked().items()}
    if fmt == "json":
        out = {name: {"value": _jsonable(value), "source": source}
               for name, (value, source) in rows.items()}
        sys.stdout.write(orjson.dumps({"valid": True, "settings": out},
                                      option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    print("# streamer configuration (valid); secrets masked; NAME=VALUE  # source")
    for name, (value, source) in rows.items():
        print(f"{name}={value}  # {source}")
    return 0


def _jsonable(value: object) -> object:
    """A setting's value as JSON: numbers and booleans as such, anything else as text."""
    return value if isinstance(value, bool | int | float) or value is None else str(value)


async def schema(settings: Settings) -> int:
    """Create the database and tables if missing."""
    ch = ClickHouse.from_settings(settings)
    for done in await create_schema(ch):
        console.print(done)
    console.print(f"schema ready in database [bold]{settings.clickhouse_database}[/]")
    return 0


# The tables `sample` fills: a rerun replaces them (--replace) or is refused, never doubles them.
SAMPLE_TABLES = ("post_events", "follows", "blocks")


async def sample(settings: Settings, args: argparse.Namespace) -> int:
    """Load a generated follow graph and events (last 2 hours) into ClickHouse."""
    if not settings.clickhouse_embedded and not args.allow_server:
        raise UsageError(f"sample: CLICKHOUSE_URL is a ClickHouse server "
                         f"({mask_url(settings.clickhouse_dsn)}); generated rows go there only "
                         "with --allow-server")
    ch = ClickHouse.from_settings(settings)
    await create_schema(ch)
    await _empty_or_refuse(ch, settings.clickhouse_database, replace=args.replace)
    now_ms = wall_ms()
    with console.status("generating follow graph…"):
        graph = await load_graph_rows(ch, args.users, args.avg_follows, now_ms)
    batch: list[Event] = []
    with console.status(f"loading {args.events:,} events…"):
        for ev in events(args.events, args.posts, args.users, now_ms, 2 * 3_600_000):
            batch.append(ev)
            if len(batch) >= 100_000:
                await queries.insert_events(ch, batch)
                batch = []
        await queries.insert_events(ch, batch)
    print(f"loaded {graph['edges']:,} follows ({graph['unfollows']:,} unfollows, "
          f"{graph['refollows']:,} re-follows, {graph['blocks']:,} blocks, "
          f"{graph['unblocks']:,} unblocks) and {args.events:,} events into ClickHouse "
          f"database {settings.clickhouse_database}")
    return 0


async def _empty_or_refuse(ch: ClickHouse, database: str, *, replace: bool) -> None:
    """Empty the sample tables (replace) or raise UsageError when one already holds rows."""
    counts = {t: int((await ch.rows(f"SELECT count() FROM {database}.{t}"))[0][0])
              for t in SAMPLE_TABLES}
    held = ", ".join(f"{t} holds {n:,} rows" for t, n in counts.items() if n)
    if not held:
        return
    if not replace:
        raise UsageError(f"sample: {held}; pass --replace to empty "
                         f"{', '.join(SAMPLE_TABLES)} first (nothing was changed)")
    for table in SAMPLE_TABLES:
        await ch.command(f"TRUNCATE TABLE IF EXISTS {database}.{table}")
    print(f"replaced: emptied {', '.join(SAMPLE_TABLES)} ({held})")


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
    except RedisError as exc:  # one line, exit 1 (not a crash of the stop sequence)
        raise StartError(f"Redis {mask_url(settings.redis_url)}: {exc}") from None
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
