"""The publish loop: every worker answers merge requests, one merger (lock holder) publishes.

Every JOB_TRENDING_INTERVAL_SEC the merger (holder of the lock guarding the trending key)
names the window of its own clock and collects each partition's answer for that window
(`stream.exchange`), so merges do not depend on the workers' clocks agreeing. A merge that
misses partitions is never published: `core.publish_policy.merger_source()` decides between the
complete merge, the ClickHouse result (mode `clickhouse`) and keeping the current value.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.partition_state import PartitionState
from streamer.core.payloads import TrendingMeta, trending_key, trending_lock_key
from streamer.core.publish_policy import PublishSource, merger_source
from streamer.core.scoring import PostCounts, merge_partials
from streamer.core.window import window_at
from streamer.errors import LockLost
from streamer.jobs.runner import replica_name
from streamer.ops.logging import correlation_scope, window_text
from streamer.ops.metrics import (
    MERGE_MISSING_PARTITIONS,
    PUBLISH_AGE,
    PUBLISH_INCOMPLETE,
    PUBLISH_INTERVAL,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings
from streamer.stream.exchange import (
    Answers,
    MergeExchange,
    MergeRequest,
    ReconcileHook,
    ReconcileRequests,
)
from streamer.trending.job import publish_clickhouse_trending, record_publish
from streamer.trending.write import publish_trending

log = logging.getLogger("streamer.stream.publisher")
MERGE_LOCK = "trending-merge"
LOCK_TTL_MS = 15_000
COLLECT_POLL_S = 0.05


def merge_wait_s(interval_s: int) -> float:
    """How long the merger waits for every partition's answer to its request."""
    return max(0.5, min(5.0, interval_s * 0.4))


def answer_poll_s(interval_s: int) -> float:
    """How often every worker looks for a new merge request."""
    return min(0.25, interval_s / 20)


class OwnedStates(Protocol):
    """What the merger needs of the ingest (`stream.ingest.Ingestor`): the owned partitions'
    states, and a way to advance them all to a time (the worker passes the ingestor in)."""

    @property
    def states(self) -> Mapping[int, PartitionState]:
        """Partition -> its state, for every partition this worker owns now."""

    def advance_all(self, now_ms: int) -> None:
        """Advance every owned state to `now_ms`."""


class Publisher:
    """The publish loop of one worker."""

    def __init__(
        self,
        settings: Settings | LiveSettings,
        redis: Redis,
        ingestor: OwnedStates,
        partition_count: Callable[[], int],
        ch: ClickHouse,
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
        # Keyed by the trending key, not the app id: two deployments never publish at once.
        self.lock = RedisLock(redis, MERGE_LOCK, LOCK_TTL_MS, replica_name(),
                              key=trending_lock_key(settings.job_trending_window_hours, "merge"))
        self.exchange = MergeExchange(redis, self.live, self.lock.token)
        self.requests = ReconcileRequests(redis, self.live)
        self.last_publish_ms = 0
        self.last_complete_ms = wall_ms()  # merger_source counts the fallback delay from here
        self.advanced_to_ms = 0  # the latest time the states were advanced to

    async def run(self, stop: asyncio.Event) -> None:
        """Answer requests and tick on wall-clock multiples of the interval until stop is set."""
        helpers = [asyncio.create_task(self._renew_lock(stop)),
                   asyncio.create_task(self._answer_loop(stop))]
        try:
            await self._tick_loop(stop)
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.reconcile is not None:
                await self.reconcile.stop()
            await self.lock.release()

    async def _renew_lock(self, stop: asyncio.Event) -> None:
        """Keep the merge lease alive between ticks while we hold it."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LOCK_TTL_MS / 3000)
            if self.lock.held and not stop.is_set():
                with contextlib.suppress(Exception):
                    await self.lock.extend()

    async def _answer_loop(self, stop: asyncio.Event) -> None:
        """Answer the open merge request for every owned partition, as soon as it appears."""
        failing = False  # log the first failure of a streak only (e.g. a Redis failover)
        while not stop.is_set():
            poll_s = answer_poll_s(self.live.current.job_trending_interval_sec)  # reloadable
            try:
                req = await self.exchange.current()
                if req is not None:
                    await self.answer(req)
                failing = False
            except Exception as exc:
                if not failing:
                    log.warning("answering merge requests failed: %s: %s", type(exc).__name__, exc)
                failing = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), poll_s)

    async def answer(self, req: MergeRequest) -> list[int]:
        """Advance to the merger's time if it is ahead of ours, then answer for its window."""
        if not self.exchange.has_answered(req.request_id, self.ingestor.states):
            self._advance(max(wall_ms(), req.now_ms))
        current = window_at(self.advanced_to_ms, self.settings.window_minutes)
        return await self.exchange.answer(req, self.ingestor.states, current)

    def _advance(self, now_ms: int) -> None:
        """Advance every state; windows never move back, so they stand at the latest time given
        (no state is created or advanced past this worker's own clock elsewhere)."""
        self.advanced_to_ms = max(self.advanced_to_ms, now_ms)
        self.ingestor.advance_all(now_ms)

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
            with correlation_scope("publish"):  # every line of this tick, merge to Redis write
                try:
                    await self.tick()
                except Exception as exc:
                    log.error("publish tick %d failed: %s: %s", tick, type(exc).__name__, exc)

    async def tick(self) -> None:
        """Advance, answer reconcile requests, and merge if we are the merger."""
        now = wall_ms()
        self._advance(now)
        await self.requests.answer(self.ingestor.states, now)
        PUBLISH_INTERVAL.set(self.settings.job_trending_interval_sec)
        if self.last_publish_ms:
            PUBLISH_AGE.set((now - self.last_publish_ms) / 1000)
        if not await self._hold_lock():
            return
        await self.merge(now)
        if self.reconcile is not None:
            await self.requests.drive(self.reconcile, self.partition_count(), now)

    async def _hold_lock(self) -> bool:
        try:
            return await (self.lock.extend() if self.lock.held else self.lock.acquire())
        except Exception as exc:
            log.warning("merge lock check failed: %s", exc)
            return False

    async def gather(self, now_ms: int, partitions: int) -> tuple[MergeRequest, Answers]:
        """Name the window of now, answer for our own partitions, wait for everyone else's."""
        req = await self.exchange.request(now_ms, self.settings.job_trending_topk)
        log.debug("merge request %s for [%d, %d)", req.request_id, req.window.start_ms,
                  req.window.end_ms)
        await self.answer(req)
        deadline = time.monotonic() + merge_wait_s(self.settings.job_trending_interval_sec)
        while True:
            answers = await self.exchange.collect(req, partitions)
            if not answers.missing or time.monotonic() >= deadline:
                return req, answers
            await asyncio.sleep(COLLECT_POLL_S)

    async def merge(self, now_ms: int) -> None:
        """Publish the complete merge, else what merger_source says (ClickHouse or nothing)."""
        s = self.settings
        if self.reconcile is not None and self.reconcile.use_clickhouse:  # drift: no merge needed
            await self._publish_clickhouse(now_ms, "drift")
            return
        started = time.perf_counter()
        req, answers = await self.gather(now_ms, self.partition_count())
        MERGE_MISSING_PARTITIONS.set(len(answers.missing))
        source = await self._source(now_ms, not answers.missing)
        if source is PublishSource.STREAM:
            posts = merge_partials(answers.partials, s.job_trending_topk)
            extra = {"tick": now_ms // self.interval_ms, "request": req.request_id}
            meta = TrendingMeta(now_ms, req.window, "stream", answers.present, (), extra,
                                count=s.job_trending_count, min_people=s.job_trending_min_people)
            if await self._publish(posts, meta, started):
                self.last_complete_ms = now_ms
            return
        if answers.missing:
            PUBLISH_INCOMPLETE.inc()
            log.warning("merge misses partitions %s (no answer for %s): %s", answers.missing,
                        window_text(req.window.start_ms, req.window.end_ms), source.value)
        if source is PublishSource.CLICKHOUSE:
            await self._publish_clickhouse(now_ms, "incomplete merge")

    async def _source(self, now_ms: int, complete: bool) -> PublishSource:
        """merger_source() with this worker's facts: drift verdict, last complete merge, key TTL."""
        s = self.settings
        pttl = int(await self.redis.pttl(trending_key(s.job_trending_window_hours)))
        return merger_source(
            now_ms=now_ms, merge_complete=complete,
            use_clickhouse=self.reconcile is not None and self.reconcile.use_clickhouse,
            last_complete_ms=self.last_complete_ms, key_ttl_left_ms=pttl if pttl > 0 else None,
            next_try_ms=(now_ms // self.interval_ms + 1) * self.interval_ms,
            fallback_after_ms=s.streamer_fallback_after_sec * 1000,
        )

    async def _publish(self, posts: list[PostCounts], meta: TrendingMeta, started: float) -> bool:
        """Write the merge under the merge lock; False when another worker took it over."""
        s = self.settings
        try:
            await publish_trending(self.redis, s.job_trending_window_hours, posts, meta,
                                   s.trending_ttl_ms, self.lock)
        except LockLost:
            log.warning("lost the merge lock while publishing; another worker merges now")
            return False
        record_publish(meta.mode, started)
        self.last_publish_ms = meta.generated_at_ms
        log.debug("published %d posts (%s, request %s)", len(posts), meta.mode,
                  meta.extra.get("request") if meta.extra else None)
        return True

    async def _publish_clickhouse(self, now_ms: int, reason: str) -> None:
        """The ClickHouse result instead of the merge."""
        try:
            await publish_clickhouse_trending(self.settings, self.ch, self.redis, now_ms,
                                              self.lock, {"reason": reason})
        except LockLost:
            log.warning("lost the merge lock while publishing; another worker merges now")
            return
        except Exception as exc:
            log.error("ClickHouse fallback failed (%s: %s): trending not refreshed",
                      type(exc).__name__, exc)
            return
        self.last_publish_ms = now_ms
