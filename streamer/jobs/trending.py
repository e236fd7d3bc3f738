"""ClickHouse-mode trending: the batch query over the contract's window, published atomically."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import orjson
from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.cache.publish import publish_trending
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.config import Settings
from streamer.core.payloads import TrendingMeta, trending_meta_key
from streamer.core.window import window_at
from streamer.jobs.base import Job
from streamer.ops.metrics import MODE, PUBLISH_AGE, PUBLISH_DURATION, PUBLISH_TOTAL

Clock = Callable[[], int]


def wall_ms() -> int:
    """Current wall-clock time in epoch milliseconds."""
    return time.time_ns() // 1_000_000


async def stream_is_fresh(redis: Redis, settings: Settings, now_ms: int) -> bool:
    """True when a stream worker published within the last 2 intervals."""
    raw = await redis.get(trending_meta_key(settings.job_trending_window_hours))
    if raw is None:
        return False
    meta = orjson.loads(raw)
    age_ms = now_ms - int(meta.get("generated_at_ms", 0))
    return meta.get("mode") == "stream" and age_ms < 2 * settings.job_trending_interval_sec * 1000


class ClickHouseTrendingJob(Job):
    """Publishes trending from ClickHouse; as a standby only while the stream is stale."""

    name = "trending"
    exclusive = True

    def __init__(
        self,
        settings: Settings,
        ch: ClickHouse,
        redis: Redis,
        standby: bool = True,
        clock: Clock = wall_ms,
        on_published: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.ch = ch
        self.redis = redis
        self.standby = standby
        self.clock = clock
        self.interval_s = settings.job_trending_interval_sec
        self.on_published = on_published

    async def should_run(self) -> tuple[bool, str]:
        """A standby stays quiet while the stream publishes."""
        if self.standby and await stream_is_fresh(self.redis, self.settings, self.clock()):
            return False, "stream mode is publishing"
        return True, ""

    async def run(self, lock: RedisLock | None) -> str:
        """Query, then write value and meta together."""
        started = time.perf_counter()
        now_ms = self.clock()
        window = window_at(now_ms, self.settings.window_minutes)
        posts = await queries.trending(self.ch, window, self.settings.job_trending_topk)
        meta = TrendingMeta(now_ms, window, "clickhouse", [])
        await publish_trending(
            self.redis, self.settings.job_trending_window_hours, posts, meta,
            self.settings.trending_ttl_ms, lock,
        )
        PUBLISH_TOTAL.labels(mode="clickhouse").inc()
        PUBLISH_DURATION.observe(time.perf_counter() - started)
        PUBLISH_AGE.set(0)
        MODE.labels(mode="clickhouse").set(1)
        if self.on_published is not None:
            await self.on_published()
        return f"published {len(posts)} posts for [{window.start_ms}, {window.end_ms})"
