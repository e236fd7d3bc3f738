"""Reconciliation: the stream's snapshot against ClickHouse over the same window, and drift policy.

The stream merger builds one `core.reconcile.StreamSnapshot` every JOB_RECONCILE_INTERVAL_SEC and
hands it to the `BackgroundReconciler` the worker got from `make_stream_reconciler`. This module
never imports the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import orjson
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import Clock, wall_ms
from streamer.core.payloads import reconcile_key, sink_positions_key
from streamer.core.people import counting_of
from streamer.core.reconcile import DriftPolicy, ReconcileReport, StreamSnapshot, compare, is_drift
from streamer.core.scoring import merge_partials
from streamer.ops.logging import new_correlation_id
from streamer.ops.metrics import (
    JOB_DURATION,
    JOB_LAST_SUCCESS,
    JOB_RUNS,
    MODE,
    RECONCILE_DRIFT,
    RECONCILE_MAX_DELTA,
    RECONCILE_OVERLAP,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.reconcile")
FLUSH_MARGIN_S = 2.0
SINK_WAIT_EXTRA_S = 30.0  # beyond the flush wait, how long to wait for a lagging sink
SINK_POLL_S = 0.25
Sleep = Callable[[float], Awaitable[None]]


def export_metrics(report: ReconcileReport, use_clickhouse: bool) -> None:
    """Set the reconcile gauges and the mode gauge from one report."""
    RECONCILE_OVERLAP.set(report.topk_overlap)
    RECONCILE_MAX_DELTA.set(report.max_score_delta)
    RECONCILE_DRIFT.set(1 if use_clickhouse else 0)
    MODE.labels(mode="clickhouse").set(1 if use_clickhouse else 0)
    MODE.labels(mode="stream").set(0 if use_clickhouse else 1)


class Reconciler:
    """Compares stream snapshots with ClickHouse and decides when drift forces ClickHouse results."""

    def __init__(
        self,
        settings: Settings | LiveSettings,
        ch: ClickHouse,
        redis: Redis,
        *,
        flush_wait_s: float | None = None,
        clock: Clock = wall_ms,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.live = live_of(settings)
        self.settings = settings = self.live.current
        self.ch = ch
        self.redis = redis
        self.fixed_flush_wait_s = flush_wait_s  # None: from STREAMER_SINK_FLUSH_MS at each run
        self.clock = clock
        self.sleep = sleep
        self.policy = DriftPolicy(settings.reconcile_drift_runs)
        self.last_report: ReconcileReport | None = None

    @property
    def flush_wait_s(self) -> float:
        """How long a run waits for the sink to write the window (reloaded settings apply)."""
        if self.fixed_flush_wait_s is not None:
            return self.fixed_flush_wait_s
        return self.settings.streamer_sink_flush_ms / 1000 + FLUSH_MARGIN_S

    @property
    def use_clickhouse(self) -> bool:
        """True while drift says: publish the ClickHouse result (meta mode "clickhouse")."""
        return self.policy.use_clickhouse

    @property
    def mode(self) -> str:
        """The trending source the drift policy selects: "stream" or "clickhouse"."""
        return self.policy.mode

    async def run(self, snapshot: StreamSnapshot) -> ReconcileReport:
        """Wait for the sink to flush, query ClickHouse over the window, compare, apply policy."""
        self.settings = self.live.current  # a reload applies from the next run on
        self.policy.runs = self.settings.reconcile_drift_runs
        sink_caught_up = True
        if snapshot.offsets:
            sink_caught_up = await self.wait_for_sink(snapshot.offsets)
        else:
            await self.sleep(self.flush_wait_s)
        started = time.perf_counter()
        try:
            report = await self._run(snapshot, started, sink_caught_up)
        except Exception:
            JOB_RUNS.labels(job="reconcile", status="failure").inc()
            raise
        JOB_RUNS.labels(job="reconcile", status="success").inc()
        JOB_LAST_SUCCESS.labels(job="reconcile").set(time.time())
        JOB_DURATION.labels(job="reconcile").observe(report.duration_s)
        return report

    async def _run(self, snapshot: StreamSnapshot, started: float, judge: bool) -> ReconcileReport:
        """Measure and compare; a run whose ClickHouse side may lack rows (the sink behind) is
        reported but not judged, so a slow sink never switches trending to ClickHouse."""
        report = await self.measure(snapshot)
        s = self.settings
        drifted = is_drift(report, s.reconcile_drift_threshold, s.reconcile_min_overlap) if judge else None
        changed = self.policy.observe(drifted)
        report = self.policy.stamp(report, drifted)
        report = replace(report, duration_s=time.perf_counter() - started)
        await self._write(report)
        export_metrics(report, self.use_clickhouse)
        log.log(logging.INFO if report.drifted is not True else logging.WARNING, report.log_line())
        if changed:
            log.warning("reconcile: drift policy switched trending to %s mode after %d run(s)",
                        self.mode, report.consecutive_drift_runs or 1)
        self.last_report = report
        return report

    async def wait_for_sink(self, offsets: list[int]) -> bool:
        """Wait (bounded) until the ClickHouse sink has written what the stream had read."""
        deadline = time.monotonic() + self.flush_wait_s + SINK_WAIT_EXTRA_S
        while True:
            raw = await self.redis.hgetall(
                sink_positions_key(self.settings.streamer_app_id, self.ch.engine_id))
            written = {int(k): int(v) for k, v in raw.items()}
            behind = [p for p, o in enumerate(offsets) if o >= 0 and written.get(p, 0) < o]
            if not behind:
                return True
            if time.monotonic() >= deadline:
                log.warning("reconcile: ClickHouse sink still behind the stream on partitions %s",
                            behind)
                return False
            await self.sleep(SINK_POLL_S)

    async def measure(self, snapshot: StreamSnapshot) -> ReconcileReport:
        """The three ClickHouse queries over exactly snapshot.window, then the pure comparison."""
        k = self.settings.job_trending_topk
        window = snapshot.window
        offsets = snapshot.offsets
        counting = counting_of(self.settings.job_trending_count,
                               self.settings.job_trending_min_people)
        ch_top = await queries.trending(self.ch, window, k, offsets, counting)
        stream_top = merge_partials([snapshot.posts], k)
        ids = sorted({p.post_id for p in ch_top} | {p.post_id for p in stream_top})
        counts = await queries.post_counts(self.ch, window, ids, offsets, counting)
        events = await queries.distinct_events(self.ch, window, offsets)
        return compare(snapshot, ch_top, counts, events, k=k, generated_at_ms=self.clock())

    async def _write(self, report: ReconcileReport) -> None:
        """Latest report, kept for two reconcile intervals."""
        key = reconcile_key(self.settings.job_trending_window_hours)
        ttl_ms = 2 * self.settings.job_reconcile_interval_sec * 1000
        await self.redis.set(key, orjson.dumps(report.to_payload()), px=ttl_ms)


class BackgroundReconciler:
    """The merger's hook: starts each run as a task so a publish tick never waits for it."""

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.task: asyncio.Task[ReconcileReport | None] | None = None

    @property
    def use_clickhouse(self) -> bool:
        """The drift policy's verdict (see Reconciler.use_clickhouse)."""
        return self.reconciler.use_clickhouse

    @property
    def mode(self) -> str:
        """`stream` or `clickhouse`, for readiness details and logs."""
        return self.reconciler.mode

    async def run(
        self, snapshot: StreamSnapshot
    ) -> asyncio.Task[ReconcileReport | None] | None:
        """Start a run in the background; None (and a warning) while the previous one runs."""
        if self.task is not None and not self.task.done():
            log.warning("reconcile: previous run still in progress; skipping this snapshot")
            return None
        self.task = asyncio.create_task(self._guarded(snapshot))
        return self.task

    async def stop(self) -> None:
        """Cancel a run still in progress and wait for it (before Redis and ClickHouse close)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def _guarded(self, snapshot: StreamSnapshot) -> ReconcileReport | None:
        new_correlation_id("reconcile")  # this task's own context: every line of the run
        try:
            return await self.reconciler.run(snapshot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("reconcile failed: %s: %s", type(exc).__name__, exc)
            return None


def make_stream_reconciler(
    settings: Settings | LiveSettings, ch: ClickHouse, redis: Redis
) -> BackgroundReconciler:
    """Factory the stream worker looks up by name (keeps jobs free of stream imports)."""
    return BackgroundReconciler(Reconciler(settings, ch, redis))
