"""Partials and the merger: every worker writes its partitions' top-K, one merger publishes.

Ticks are aligned to wall clock (multiples of JOB_TRENDING_INTERVAL_SEC), so every worker
writes the partials of tick k for the window of that moment; the merger (holder of the Redis
lock `trending-merge`) waits a moment, reads the partials of tick k for every partition of the
topic and publishes their exact merge. A merge missing partitions never passes as complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.cache.publish import publish_trending
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.config import Settings
from streamer.core.payloads import TrendingMeta, trending_key
from streamer.core.scoring import PostCounts
from streamer.core.topk import merge_partials
from streamer.core.window import Window, window_at
from streamer.errors import LockLost
from streamer.jobs.runner import replica_name
from streamer.ops.metrics import (
    MERGE_MISSING_PARTITIONS,
    MODE,
    PUBLISH_AGE,
    PUBLISH_DURATION,
    PUBLISH_INCOMPLETE,
    PUBLISH_TOTAL,
)
from streamer.ops.reload import LiveSettings, live_of
from streamer.stream.ingest import Ingestor
from streamer.stream.reconcile_hook import ReconcileHook, ReconcileRequests

log = logging.getLogger("streamer.stream.publisher")
MERGE_LOCK = "trending-merge"
LOCK_TTL_MS = 15_000


def partial_key(window_hours: int, partition: int) -> str:
    """Redis key of one partition's current top-K."""
    return f"{trending_key(window_hours)}:partial:{partition}"


def encode_posts(posts: Sequence[PostCounts]) -> list[list[int]]:
    """Compact rows [post_id, views, likes, comments, shares]."""
    return [[p.post_id, p.views, p.likes, p.comments, p.shares] for p in posts]


def decode_posts(rows: Sequence[Sequence[int]]) -> list[PostCounts]:
    """Inverse of encode_posts."""
    return [PostCounts(*(int(x) for x in row)) for row in rows]


def partial_depth(doc: dict[str, Any]) -> int:
    """How deep a merge may go exactly with this partial: a full partial (fewer rows than its
    writer's top-K: the partition has no more posts) bounds nothing; a truncated one bounds the
    merge at its depth. Writers of older versions wrote no depth: unbounded, as they assumed."""
    depth = doc.get("depth")
    if depth is None or len(doc["top"]) < int(depth):
        return 1 << 62
    return int(depth)


def merge_delay_s(interval_s: int) -> float:
    """How long the merger waits for other workers' partials of the same tick."""
    return max(0.3, min(3.0, interval_s * 0.25))


class Publisher:
    """The publish loop of one worker."""

    def __init__(
        self,
        settings: Settings | LiveSettings,
        redis: Redis,
        ingestor: Ingestor,
        partition_count: Callable[[], int],
        ch: ClickHouse | None,
        reconcile: ReconcileHook | None = None,
    ) -> None:
        self.live = live_of(settings)  # read once per tick: a reload applies at the next tick
        self.settings = settings = self.live.current
        self.redis = redis
        self.ingestor = ingestor
        self.partition_count = partition_count
        self.ch = ch
        self.reconcile = reconcile
        self.interval_ms = settings.job_trending_interval_sec * 1000
        # Short lease renewed in the background: a dead merger is replaced within ~LOCK_TTL_MS.
        self.lock = RedisLock(redis, MERGE_LOCK, LOCK_TTL_MS, replica_name())
        self.requests = ReconcileRequests(redis, self.live)
        self.last_publish_ms = 0
        self.exact_depth = settings.job_trending_topk  # deepest exact merge of the last read

    async def run(self, stop: asyncio.Event) -> None:
        """Tick on wall-clock multiples of the interval until stop is set."""
        renew = asyncio.create_task(self._renew_lock(stop))
        try:
            await self._tick_loop(stop)
        finally:
            renew.cancel()
            await asyncio.gather(renew, return_exceptions=True)
            await self.lock.release()

    async def _renew_lock(self, stop: asyncio.Event) -> None:
        """Keep the merge lease alive between ticks while we hold it."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_TTL_MS / 3000)
            if self.lock.held and not stop.is_set():
                with contextlib.suppress(Exception):
                    await self.lock.extend()

    async def _tick_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.settings = self.live.current
            self.interval_ms = self.settings.job_trending_interval_sec * 1000
            now = wall_ms()
            tick = now // self.interval_ms + 1
            await self.live.wait(stop, (tick * self.interval_ms - now) / 1000)
            if stop.is_set():
                break
            if wall_ms() < tick * self.interval_ms:
                continue  # woken by a reload: plan the next tick with the new settings
            try:
                await self.tick(tick)
            except Exception as exc:
                log.error("publish tick %d failed: %s: %s", tick, type(exc).__name__, exc)

    async def tick(self, tick: int) -> None:
        """Write this worker's partials, answer reconcile requests, merge if we are the merger."""
        now = wall_ms()
        self.ingestor.advance_all(now)
        await self.write_partials(tick, now)
        await self.requests.answer(self.ingestor.states, now)
        if self.last_publish_ms:
            PUBLISH_AGE.set((now - self.last_publish_ms) / 1000)
        if not await self._hold_lock():
            return
        await asyncio.sleep(merge_delay_s(self.settings.job_trending_interval_sec))
        await self.merge(tick, now)
        if self.reconcile is not None:
            await self.requests.drive(self.reconcile, self.partition_count(), now)

    async def write_partials(self, tick: int, now_ms: int) -> None:
        """One key per owned partition: its top-K of the current window."""
        s = self.settings
        window = window_at(now_ms, s.window_minutes)
        if not self.ingestor.states:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition, state in self.ingestor.states.items():
                doc = {
                    "partition": partition, "tick": tick, "generated_at_ms": now_ms,
                    "window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                    "owner": self.lock.token, "top": encode_posts(state.top(s.job_trending_topk)),
                    "depth": s.job_trending_topk,
                }
                pipe.set(partial_key(s.job_trending_window_hours, partition), orjson.dumps(doc),
                         px=s.trending_ttl_ms)
            await pipe.execute()

    async def _hold_lock(self) -> bool:
        try:
            return await (self.lock.extend() if self.lock.held else self.lock.acquire())
        except Exception as exc:
            log.warning("merge lock check failed: %s", exc)
            return False

    async def read_partials(
        self, tick: int, window: Window, partitions: int
    ) -> tuple[list[list[PostCounts]], list[int], list[int]]:
        """Partials of this tick and window; (partials, present, missing partitions)."""
        hours = self.settings.job_trending_window_hours
        raws = await self.redis.mget([partial_key(hours, p) for p in range(partitions)])
        found: list[list[PostCounts]] = []
        present: list[int] = []
        missing: list[int] = []
        self.exact_depth = self.settings.job_trending_topk
        for partition, raw in enumerate(raws):
            doc: dict[str, Any] | None = orjson.loads(raw) if raw else None
            if doc and doc["tick"] == tick and doc["window_end_ms"] == window.end_ms:
                found.append(decode_posts(doc["top"]))
                present.append(partition)
                self.exact_depth = min(self.exact_depth, partial_depth(doc))
            else:
                missing.append(partition)
        return found, present, missing

    async def merge(self, tick: int, now_ms: int) -> None:
        """Merge the tick's partials and publish them (or ClickHouse when drift says so)."""
        s = self.settings
        started = time.perf_counter()
        window = window_at(now_ms, s.window_minutes)
        if self.reconcile is not None and self.reconcile.use_clickhouse and self.ch is not None:
            await self._publish_clickhouse(window, now_ms)
            return
        partials, present, missing = await self.read_partials(tick, window, self.partition_count())
        MERGE_MISSING_PARTITIONS.set(len(missing))
        if missing:
            PUBLISH_INCOMPLETE.inc()
            if await self.redis.exists(trending_key(s.job_trending_window_hours)):
                log.warning("merge of tick %d misses partitions %s: keeping previous value",
                            tick, missing)
                return
        posts = merge_partials(partials, self.exact_depth)
        extra: dict[str, Any] = {"tick": tick}
        if self.exact_depth < s.job_trending_topk:  # a worker on another top-K cut its partial
            extra["depth_limited_to"] = self.exact_depth
        meta = TrendingMeta(now_ms, window, "stream", present, missing, extra)
        await self._publish(posts, meta)
        PUBLISH_DURATION.observe(time.perf_counter() - started)
        MODE.labels(mode="stream").set(1)
        MODE.labels(mode="clickhouse").set(0)

    async def _publish(self, posts: list[PostCounts], meta: TrendingMeta) -> None:
        s = self.settings
        try:
            await publish_trending(self.redis, s.job_trending_window_hours, posts, meta,
                                   s.trending_ttl_ms, self.lock)
        except LockLost:
            log.warning("lost the merge lock while publishing; another worker merges now")
            return
        PUBLISH_TOTAL.labels(mode=meta.mode).inc()
        self.last_publish_ms = meta.generated_at_ms
        PUBLISH_AGE.set(0)

    async def _publish_clickhouse(self, window: Window, now_ms: int) -> None:
        assert self.ch is not None
        posts = await queries.trending(self.ch, window, self.settings.job_trending_topk)
        await self._publish(posts, TrendingMeta(now_ms, window, "clickhouse", []))
        MODE.labels(mode="clickhouse").set(1)
        MODE.labels(mode="stream").set(0)
