"""The hook for reconciliation: complete-window partials gathered across workers.

Every JOB_RECONCILE_INTERVAL_SEC the merger writes a request naming a complete-minute window
(`core.window.complete_window_at`). Each worker answers, at its next tick, with each owned
partition's top-(2K) and event total over that window. Once every partition has answered, the
merger hands their union, one `core.reconcile.StreamSnapshot`, to the reconciler
(`jobs.reconcile`; jobs never import the stream).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

import orjson
from redis.asyncio import Redis

from streamer.core.partition_state import PartitionState
from streamer.core.payloads import complete_snapshot_key, reconcile_request_key
from streamer.core.reconcile import ReconcileReport, StreamSnapshot
from streamer.core.scoring import merge_partials
from streamer.core.window import Window, complete_window_at
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings
from streamer.stream.partials import decode_posts, encode_posts

log = logging.getLogger("streamer.stream.reconcile")


class ReconcileHook(Protocol):
    """What the merger needs from a reconciler (jobs.reconcile.BackgroundReconciler)."""

    @property
    def use_clickhouse(self) -> bool:
        """The drift policy's verdict: publish from ClickHouse instead of the merge."""

    async def run(self, snapshot: StreamSnapshot) -> asyncio.Task[ReconcileReport | None] | None:
        """Start comparing the stream's complete-window snapshot with ClickHouse."""

    async def stop(self) -> None:
        """Cancel a comparison still running (the worker is stopping)."""


class ReconcileRequests:
    """Request/answer protocol over this deployment's Redis keys (core.payloads)."""

    def __init__(self, redis: Redis, settings: Settings | LiveSettings) -> None:
        self.redis = redis
        self.live = live_of(settings)
        self.settings = settings = self.live.current
        self.app_id = settings.streamer_app_id
        self.hours = settings.job_trending_window_hours
        self.request_key = reconcile_request_key(self.app_id, self.hours)
        self.interval_ms = settings.job_reconcile_interval_sec * 1000
        self.last_request_ms = 0
        self.k = 2 * settings.job_trending_topk

    def _refresh(self) -> None:
        """Pick up reloaded settings (once per call from the tick)."""
        self.settings = self.live.current
        self.interval_ms = self.settings.job_reconcile_interval_sec * 1000
        self.k = 2 * self.settings.job_trending_topk

    async def answer(self, states: Mapping[int, PartitionState], now_ms: int) -> None:
        """Write the complete partial of every owned partition for an open request."""
        self._refresh()
        raw = await self.redis.get(self.request_key)
        if not raw or not states:
            return
        req = orjson.loads(raw)
        k = int(req.get("k", self.k))  # the requester's depth decides, whatever ours is now
        window = Window(int(req["window_start_ms"]), int(req["window_end_ms"]))
        ttl = max(self.interval_ms, 120_000)
        for partition, state in list(states.items()):  # a rebalance may change it meanwhile
            key = complete_snapshot_key(self.app_id, self.hours, partition)
            if not state.can_compute(window):
                continue
            partial = state.complete_partial(window, k)
            doc = {"window_start_ms": window.start_ms, "total_events": partial.events,
                   "top": encode_posts(partial.posts), "offset": (partial.offsets or [-1])[0]}
            await self.redis.set(key, orjson.dumps(doc), px=ttl)

    async def drive(self, hook: ReconcileHook, partitions: int, now_ms: int) -> None:
        """Merger side: request on schedule, run the hook once every partition answered."""
        self._refresh()
        if now_ms - self.last_request_ms >= self.interval_ms:
            window = complete_window_at(now_ms, self.settings.window_minutes)
            req = {"window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                   "k": self.k}
            await self.redis.set(self.request_key, orjson.dumps(req), px=self.interval_ms)
            self.last_request_ms = now_ms
            return
        snapshot = await self._collect(partitions)
        if snapshot is None:
            return
        await self.redis.delete(self.request_key)
        try:
            await hook.run(snapshot)
        except Exception as exc:
            log.error("reconcile failed: %s: %s", type(exc).__name__, exc)

    async def _collect(self, partitions: int) -> StreamSnapshot | None:
        """The union of every partition's answer to the open request; None until all answered."""
        raw = await self.redis.get(self.request_key)
        if not raw:
            return None
        req = orjson.loads(raw)
        window = Window(int(req["window_start_ms"]), int(req["window_end_ms"]))
        keys = [complete_snapshot_key(self.app_id, self.hours, p) for p in range(partitions)]
        docs = [orjson.loads(r) if r else None for r in await self.redis.mget(keys)]
        if any(d is None or d["window_start_ms"] != window.start_ms for d in docs):
            return None
        partials = [decode_posts(d["top"]) for d in docs if d]
        total = sum(int(d["total_events"]) for d in docs if d)
        depth = int(req.get("k", self.k))
        offsets = [int(d.get("offset", -1)) for d in docs if d]
        return StreamSnapshot(window, merge_partials(partials, depth), total,
                              list(range(partitions)), [], depth, offsets)
