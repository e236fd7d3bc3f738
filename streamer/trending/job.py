"""ClickHouse-mode trending: the batch query over the contract's window, published atomically."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import Clock, wall_ms
from streamer.core.payloads import TrendingMeta, trending_lock_key, trending_meta_key
from streamer.core.people import counting_of
from streamer.core.publish_policy import stream_is_publishing
from streamer.core.scoring import PostCounts
from streamer.core.window import window_at
from streamer.jobs.base import Job
from streamer.ops.logging import window_text
from streamer.ops.metrics import (
    MODE,
    PUBLISH_AGE,
    PUBLISH_DURATION,
    PUBLISH_LAST_SUCCESS,
    PUBLISH_TOTAL,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings
from streamer.trending.write import publish_trending


async def read_meta(redis: Redis, settings: Settings) -> dict[str, Any] | None:
    """The trending meta object, or None when missing or unreadable (treated as stale)."""
    raw = await redis.get(trending_meta_key(settings.job_trending_window_hours))
    if raw is None:
        return None
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return meta if isinstance(meta, dict) else None


async def meta_and_age(
    redis: Redis, settings: Settings, now_ms: int
) -> tuple[dict[str, Any] | None, int]:
    """The meta and the ms since it was written: TTL minus its PTTL, measured by Redis.

    Independent of the writer's clock and of when it stamped generated_at_ms (the merger stamps
    its tick, then writes a merge delay later). The TTL is the writer's own (`ttl_ms` in the
    meta), not the reader's: their intervals may differ for a while after a reload."""
    meta = await read_meta(redis, settings)
    if meta is None:
        return None, 0
    pttl = int(await redis.pttl(trending_meta_key(settings.job_trending_window_hours)))
    if pttl > 0:
        return meta, max(0, int(meta.get("ttl_ms", settings.trending_ttl_ms)) - pttl)
    return meta, now_ms - int(meta.get("generated_at_ms", 0))  # no TTL: fall back to its stamp


async def clickhouse_trending(
    settings: Settings, ch: ClickHouse, now_ms: int, extra: dict[str, Any] | None = None,
    partitions: list[int] | None = None,
) -> tuple[list[PostCounts], TrendingMeta]:
    """The ClickHouse top-K over window_at(now) and its meta (mode "clickhouse")."""
    window = window_at(now_ms, settings.window_minutes)
    counting = counting_of(settings.job_trending_count, settings.job_trending_min_people)
    posts = await queries.trending(ch, window, settings.job_trending_topk, counting=counting)
    return posts, TrendingMeta(now_ms, window, "clickhouse", partitions or [], extra=extra,
                               count=counting.mode, min_people=counting.min_people)


def record_publish(mode: str, started: float) -> None:
    """Publish metrics shared by every ClickHouse-mode writer."""
    PUBLISH_TOTAL.labels(mode=mode).inc()
    PUBLISH_DURATION.observe(time.perf_counter() - started)
    PUBLISH_AGE.set(0)
    PUBLISH_LAST_SUCCESS.labels(mode=mode).set(time.time())
    MODE.labels(mode=mode).set(1)
    MODE.labels(mode="stream" if mode == "clickhouse" else "clickhouse").set(0)


async def publish_clickhouse_trending(
    settings: Settings, ch: ClickHouse, redis: Redis, now_ms: int,
    lock: RedisLock | None = None, extra: dict[str, Any] | None = None,
    partitions: list[int] | None = None,
) -> int:
    """Query ClickHouse and write value + meta together; returns the number of posts.

    The stream merger calls this for its drift and stale-stream fallbacks (with
    extra={"reason": ...} and its partitions)."""
    started = time.perf_counter()
    posts, meta = await clickhouse_trending(settings, ch, now_ms, extra, partitions)
    await publish_trending(
        redis, settings.job_trending_window_hours, posts, meta, settings.trending_ttl_ms, lock
    )
    record_publish("clickhouse", started)
    return len(posts)


class ClickHouseTrendingJob(Job):
    """Publishes trending from ClickHouse every interval (`jobs --force`, `jobs --once`)."""

    name = "trending"
    exclusive = True

    def __init__(
        self,
        settings: Settings | LiveSettings,
        ch: ClickHouse,
        redis: Redis,
        standby: bool = True,
        clock: Clock = wall_ms,
        on_published: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.live = live_of(settings)
        self.ch = ch
        self.redis = redis
        self.standby = standby
        self.clock = clock
        self.on_published = on_published
        self.lock_key = trending_lock_key(self.live.current.job_trending_window_hours, "jobs")
        self.refresh()

    def refresh(self) -> None:
        """Settings of the next run (the runner calls this between runs)."""
        self.settings = self.live.current
        self.interval_s = self.settings.job_trending_interval_sec

    async def should_run(self) -> tuple[bool, str]:
        """A standby stays quiet while a stream worker publishes (its own ClickHouse runs don't count)."""
        if not self.standby:
            return True, ""
        meta, age_ms = await meta_and_age(self.redis, self.settings, self.clock())
        if stream_is_publishing(meta, age_ms, self.settings.job_trending_interval_sec):
            return False, "a stream worker is publishing"
        return True, ""

    async def run(self, lock: RedisLock | None) -> str:
        """Query, then write value and meta together."""
        now_ms = self.clock()
        n = await publish_clickhouse_trending(
            self.settings, self.ch, self.redis, now_ms, lock, extra={"publisher": "jobs"}
        )
        if self.on_published is not None:
            await self.on_published()
        window = window_at(now_ms, self.settings.window_minutes)
        return f"published {n} posts for {window_text(window.start_ms, window.end_ms)}"
