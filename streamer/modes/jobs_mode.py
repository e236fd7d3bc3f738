"""`streamer jobs`: ClickHouse-only mode, which is also the standby beside stream workers.

Default: trending runs as a standby (publishes only while no one else keeps the key fresh,
which, with no workers at all, means every interval). `--force`: publish every interval
regardless. `--once`: one run of each selected job (trending skipped while the stream is fresh
unless `--force`).
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis

from streamer.cache.redis_client import make_redis
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.jobs.base import Job
from streamer.jobs.runner import JobRunner
from streamer.jobs.suggestions import SuggestionsJob
from streamer.ops.http import start_http
from streamer.ops.metrics import serve_as
from streamer.settings.live import LiveSettings, start_reloading
from streamer.settings.model import Settings
from streamer.trending.job import ClickHouseTrendingJob
from streamer.trending.standby import StandbyTrending

log = logging.getLogger("streamer.jobs")


def select_jobs(
    live: LiveSettings, ch: ClickHouse, redis: Redis, once: bool, only: str | None, force: bool,
    full: bool,
) -> tuple[list[Job], StandbyTrending | None]:
    """The jobs the flags ask for; trending runs as a standby unless `--once` or `--force`."""
    jobs: list[Job] = []
    standby: StandbyTrending | None = None
    if only in (None, "trending"):
        if once or force:
            jobs.append(ClickHouseTrendingJob(live, ch, redis, standby=not force))
        else:
            standby = StandbyTrending(live, ch, redis)
    if only in (None, "suggestions"):
        jobs.append(SuggestionsJob(live, ch, redis, full=full, once=once))
    return jobs, standby


async def run_jobs(
    settings: Settings,
    once: bool,
    only: str | None,
    force: bool,
    stop: asyncio.Event,
    full: bool = False,
) -> int:
    """Run the selected jobs once (exit 0 only if all succeeded) or on their intervals."""
    live = LiveSettings(settings)  # reloaded from STREAMER_CONFIG_FILE and on SIGHUP
    reloaders = [] if once else [start_reloading(live, stop)]  # SIGHUP handled from here on
    ch = ClickHouse.from_settings(settings)
    if ch.embedded:
        await create_schema(ch)  # a fresh embedded directory has no tables yet
    redis = make_redis(settings)
    jobs, standby = select_jobs(live, ch, redis, once, only, force, full)
    runner = JobRunner(jobs, redis, settings.job_max_concurrent, live=live)
    try:
        if once:
            ok = await runner.run_all_once()
            print(once_summary(runner, ok), flush=True)
            return 0 if ok else 1
        return await serve_jobs(live, redis, runner, standby, stop, reloaders)
    finally:
        await redis.aclose()
        ch.close()


def once_summary(runner: JobRunner, ok: bool) -> str:
    """`jobs --once: trending ok, suggestions failed; exit 1` (each job's outcome, the code)."""
    words = {"success": "ok", "failure": "failed", "skipped": "skipped"}
    outcomes = ", ".join(f"{name} {words[status.value]}"
                         for name, status in runner.last_status.items())
    return f"jobs --once: {outcomes or 'no job selected'}; exit {0 if ok else 1}"


async def serve_jobs(
    live: LiveSettings, redis: Redis, runner: JobRunner, standby: StandbyTrending | None,
    stop: asyncio.Event, reloaders: list[asyncio.Task[None]],
) -> int:
    """Run the jobs on their intervals (and the standby) with HTTP, until `stop` is set."""

    async def ready() -> tuple[bool, str]:
        await redis.ping()
        role = f"; trending standby {standby.state}" if standby is not None else ""
        return True, "redis reachable" + role

    serve_as("jobs", live.current.job_trending_interval_sec)
    http = await start_http(live.current.streamer_web_port, ready)
    names = [j.name for j in runner.jobs] + (["trending (standby)"] if standby else [])
    log.info("jobs mode running: %s", ", ".join(names))
    tasks = [asyncio.create_task(runner.run_forever())] if runner.jobs else []
    if standby is not None:
        tasks.append(asyncio.create_task(standby.run_forever(stop)))
    await stop.wait()
    log.info("stopping jobs mode")
    runner.stop()
    await asyncio.gather(*tasks, *reloaders)
    await http.cleanup()
    return 0
