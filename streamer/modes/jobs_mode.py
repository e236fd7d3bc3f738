"""`streamer jobs`: ClickHouse-only mode (also the standby beside stream workers)."""

from __future__ import annotations

import asyncio
import logging

from streamer.cache.redis_client import make_redis
from streamer.clickhouse.client import ClickHouse
from streamer.config import Settings
from streamer.jobs.base import Job
from streamer.jobs.runner import JobRunner
from streamer.jobs.suggestions import SuggestionsJob
from streamer.jobs.trending import ClickHouseTrendingJob
from streamer.ops.http import start_http

log = logging.getLogger("streamer.jobs")


async def run_jobs(
    settings: Settings, once: bool, only: str | None, force: bool, stop: asyncio.Event
) -> int:
    """Run the selected jobs once (exit 0 only if all succeeded) or on their intervals."""
    ch = ClickHouse.from_settings(settings)
    redis = make_redis(settings)
    jobs: list[Job] = []
    if only in (None, "trending"):
        jobs.append(ClickHouseTrendingJob(settings, ch, redis, standby=not force))
    if only in (None, "suggestions"):
        jobs.append(SuggestionsJob(settings, ch, redis))
    runner = JobRunner(jobs, redis, settings.job_max_concurrent)
    try:
        if once:
            return 0 if await runner.run_all_once() else 1

        async def ready() -> tuple[bool, str]:
            await redis.ping()
            return True, "redis reachable"

        http = await start_http(settings.streamer_web_port, ready)
        log.info("jobs mode running: %s", ", ".join(j.name for j in jobs))
        task = asyncio.create_task(runner.run_forever())
        await stop.wait()
        log.info("stopping jobs mode")
        runner.stop()
        await task
        await http.cleanup()
        return 0
    finally:
        await redis.aclose()
        ch.close()
