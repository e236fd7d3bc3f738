"""Standby trending publisher (`streamer jobs` beside the workers): ClickHouse only while the
stream is stale, one standby at a time, handing back as soon as the stream publishes again.

Why not "meta older than 2 intervals": the trending TTL is 1.5 intervals, so the key would be
gone for half an interval before a standby reacted. The standby reads the meta
CHECKS_PER_INTERVAL (12) times per interval and takes over once the last write is older than
TAKEOVER_FACTOR (1.2) intervals: that leaves 0.3 intervals (18 s at the default 60 s) for one
check period (5 s) plus the ClickHouse query before the key would expire, and still tolerates
12 s of stream publish jitter. While it publishes it does so every interval. "Age" is the
time since the last write as Redis measures it (TTL - PTTL of the meta key), not the writer's
generated_at_ms stamp: the merger stamps its tick and writes a merge delay later, and hosts'
clocks differ."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from streamer.cache.lock import RedisLock
from streamer.cache.redis_client import is_cluster
from streamer.clickhouse.client import ClickHouse
from streamer.clock import Clock, wall_ms
from streamer.core.payloads import (
    encode_meta,
    encode_trending,
    trending_key,
    trending_lock_key,
    trending_meta_key,
)
from streamer.core.publish_policy import (
    CHECKS_PER_INTERVAL,
    TAKEOVER_FACTOR,
    StandbyDecision,
    standby_decision,
)
from streamer.errors import LockLost
from streamer.jobs.runner import replica_name
from streamer.ops.logging import window_text
from streamer.ops.metrics import (
    JOB_DURATION,
    JOB_LAST_SUCCESS,
    JOB_RUNS,
    LOCK_CHANGES,
    MODE,
    STANDBY_PUBLISHING,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings
from streamer.trending.job import clickhouse_trending, meta_and_age, record_publish
from streamer.trending.write import write_atomically, write_if

log = logging.getLogger("streamer.standby")
LEASE_JOB = "trending-standby"


class StandbyTrending:
    """Checks the trending meta every check period; publishes from ClickHouse when it is stale."""

    name = "trending"

    def __init__(
        self,
        settings: Settings | LiveSettings,
        ch: ClickHouse,
        redis: Redis,
        *,
        clock: Clock = wall_ms,
        check_ms: int | None = None,
        takeover_factor: float = TAKEOVER_FACTOR,
    ) -> None:
        self.live = live_of(settings)
        self.ch = ch
        self.redis = redis
        self.clock = clock
        self.fixed_check_ms = check_ms
        self.takeover_factor = takeover_factor
        # Held across runs while this standby is the publisher; expires 3 checks after a crash.
        # Keyed by the trending key (not the app id): standbys of every deployment share it.
        self.lease = RedisLock(redis, LEASE_JOB, 1, replica_name(),
                               key=trending_lock_key(self.live.current.job_trending_window_hours,
                                                     "standby"))
        self.publishing = False
        self.publishes = 0
        self.refresh()

    def refresh(self) -> None:
        """Settings of the next check: interval, check period and lease follow a reload."""
        self.settings = self.live.current
        self.interval_ms = self.settings.job_trending_interval_sec * 1000
        self.check_ms = self.fixed_check_ms or max(100, self.interval_ms // CHECKS_PER_INTERVAL)
        self.lease.ttl_ms = 3 * self.check_ms

    @property
    def state(self) -> str:
        """`publishing` while this standby writes trending, else `idle`."""
        return "publishing" if self.publishing else "idle"

    async def tick(self) -> StandbyDecision:
        """One check: publish if due, keep or hand back the lease otherwise; never raises."""
        try:
            decision = await self._decide(self.redis)
            if not decision.publish:
                await (self._keep() if decision.mine else self._hand_back(decision.reason))
            elif await self._hold_lease():
                await self._publish(decision)
            else:
                decision = StandbyDecision(False, False, "another standby holds the lease")
            return decision
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            JOB_RUNS.labels(job=self.name, status="failure").inc()
            log.error("standby check failed: %s: %s", type(exc).__name__, exc)
            return StandbyDecision(False, False, f"error: {exc}")

    async def warm_up(self) -> None:
        """Open the ClickHouse connection now: a first query (chDB start-up) can take seconds,
        which a takeover cannot afford with the key about to expire."""
        try:
            await self.ch.rows("SELECT 1")
        except Exception as exc:
            log.warning("standby: ClickHouse not reachable yet: %s", exc)

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Tick every check period until stop; then give the lease up."""
        await self.warm_up()
        try:
            while not stop.is_set():
                self.refresh()
                await self.tick()
                await self.live.wait(stop, self.check_ms / 1000)
        finally:
            await self._hand_back("stopping")

    async def _decide(self, redis: Redis) -> StandbyDecision:
        meta, age_ms = await meta_and_age(redis, self.settings, self.clock())
        return standby_decision(meta, age_ms, self.lease.token, self.interval_ms,
                                self.check_ms, self.takeover_factor)

    async def _hold_lease(self) -> bool:
        """Keep or take the standby lease; False when another standby holds it."""
        if self.lease.held and await self.lease.extend():
            return True
        if await self.lease.acquire():
            LOCK_CHANGES.labels(job=LEASE_JOB, event="acquired").inc()
            return True
        return False

    async def _keep(self) -> None:
        """Still the publisher (our meta is fresh): extend the lease, or re-take it if it lapsed."""
        if await self._hold_lease():
            self._set_publishing(True, "own publish is fresh")
            return
        LOCK_CHANGES.labels(job=LEASE_JOB, event="lost").inc()
        self._set_publishing(False, "another standby took the lease")

    async def _hand_back(self, reason: str) -> None:
        """Someone else publishes (or we stop): release the lease and go idle."""
        if self.lease.held:
            await self.lease.release()
            LOCK_CHANGES.labels(job=LEASE_JOB, event="released").inc()
        self._set_publishing(False, reason)

    def _set_publishing(self, on: bool, reason: str) -> None:
        if on != self.publishing:
            verb = "taking over trending publishing" if on else "handing trending back"
            log.warning("standby: %s: %s", verb, reason)
        self.publishing = on
        STANDBY_PUBLISHING.set(1 if on else 0)
        if not on:
            MODE.labels(mode="clickhouse").set(0)

    async def _publish(self, decision: StandbyDecision) -> None:
        """Query ClickHouse and write, unless the meta changed hands while we queried."""
        started = time.perf_counter()
        now_ms = self.clock()
        extra = {"publisher": self.lease.token, "source": "standby"}
        async with self.lease.keep_alive():
            posts, meta = await clickhouse_trending(self.settings, self.ch, now_ms, extra)
            hours = self.settings.job_trending_window_hours
            values = {trending_key(hours): encode_trending(posts),
                      # the meta says its TTL like every writer's (README, "Caches")
                      trending_meta_key(hours): encode_meta(
                          replace(meta, ttl_ms=self.settings.trending_ttl_ms))}
            written = await self._write_if_still_due(values)
        if not written:
            JOB_RUNS.labels(job=self.name, status="skipped").inc()
            await self._hand_back("the trending meta changed while querying ClickHouse")
            return
        record_publish("clickhouse", started)
        JOB_RUNS.labels(job=self.name, status="success").inc()
        JOB_LAST_SUCCESS.labels(job=self.name).set(time.time())
        JOB_DURATION.labels(job=self.name).observe(time.perf_counter() - started)
        self.publishes += 1
        self._set_publishing(True, decision.reason)
        log.info("standby published %d posts for %s", len(posts),
                 window_text(meta.window.start_ms, meta.window.end_ms))

    async def _write_if_still_due(self, values: dict[str, bytes]) -> bool:
        """MULTI/EXEC under WATCH of the meta key: no write once anyone else has published.

        The lease key is checked but not watched: our own renewal (PEXPIRE) would abort the
        write. Two writers that both pass the checks still cannot both write: the first EXEC
        changes the watched meta and fails the second."""
        if is_cluster(self.redis):
            return await self._write_fenced_if_still_due(values)

        async def still_due(pipe: Pipeline) -> bool:
            holder = await pipe.get(self.lease.key)
            token = holder.decode() if isinstance(holder, bytes) else holder
            if token != self.lease.token:
                self.lease.held = False
                return False
            return (await self._decide(pipe)).publish

        meta_key = trending_meta_key(self.settings.job_trending_window_hours)
        return await write_if(self.redis, values, self.settings.trending_ttl_ms, meta_key,
                              still_due)

    async def _write_fenced_if_still_due(self, values: dict[str, bytes]) -> bool:
        """Cluster: value and meta live in different slots, so no WATCH over both. Check again,
        then write fenced by the lease: a stream publish landing between the check and the
        write can be overwritten once (docs/OPERATIONS.md, "Redis Cluster")."""
        if not (await self._decide(self.redis)).publish:
            return False
        try:
            await write_atomically(self.redis, values, self.settings.trending_ttl_ms, self.lease)
        except LockLost:
            return False
        return True
