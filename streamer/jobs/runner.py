"""Runs jobs on their intervals: bounded concurrency, Redis lock, metrics, clean stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from enum import Enum

from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.jobs.base import Job
from streamer.ops.logging import new_correlation_id
from streamer.ops.metrics import JOB_DURATION, JOB_LAST_SUCCESS, JOB_RUNS, LOCK_CHANGES
from streamer.settings.live import LiveSettings

log = logging.getLogger("streamer.jobs")
# The reason a job gives when its next run is simply not due yet (logged at DEBUG).
ROUTINE_SKIP = "next run due"


class RunStatus(Enum):
    """Outcome of one job run (the `status` label of streamer_job_runs_total)."""

    OK = "success"
    FAILED = "failure"
    SKIPPED = "skipped"


def replica_name() -> str:
    """Identifies this process in lock tokens and logs."""
    return f"{socket.gethostname()}:{os.getpid()}"


class JobRunner:
    """Owns the run loops of a set of jobs."""

    def __init__(
        self,
        jobs: Sequence[Job],
        redis: Redis,
        max_concurrent: int,
        lock_ttl_ms: int = 30_000,
        live: LiveSettings | None = None,
    ) -> None:
        self.live = live  # when given, a reload re-plans the wait for each job's next run
        self.jobs = list(jobs)
        self.redis = redis
        self.lock_ttl_ms = lock_ttl_ms
        self._slots = asyncio.Semaphore(max_concurrent)
        self._stop = asyncio.Event()
        self.last_status: dict[str, RunStatus] = {}

    def stop(self) -> None:
        """Ask every loop to finish its current run and return."""
        self._stop.set()

    async def run_once(self, job: Job) -> RunStatus:
        """One run of a job with lock, metrics and logging; never raises."""
        async with self._slots:
            cid = new_correlation_id(job.name)
            started = time.perf_counter()
            status = await self._guarded_run(job)
            elapsed = time.perf_counter() - started
            if job.counts_calls_as_runs or status is RunStatus.FAILED:
                JOB_RUNS.labels(job=job.name, status=status.value).inc()
            if job.counts_calls_as_runs:
                JOB_DURATION.labels(job=job.name).observe(elapsed)
            if job.counts_calls_as_runs and status is RunStatus.OK:
                JOB_LAST_SUCCESS.labels(job=job.name).set(time.time())
            self.last_status[job.name] = status
            log.debug("job %s finished: %s in %.3fs", job.name, status.value, elapsed,
                      extra={"job": job.name, "correlation_id_": cid})
            return status

    async def _guarded_run(self, job: Job) -> RunStatus:
        try:
            go, why = await job.should_run()
            if not go:
                # a run not yet due is routine (every replica, every tick): DEBUG
                log.log(logging.DEBUG if why.startswith(ROUTINE_SKIP) else logging.INFO,
                        "job %s skipped: %s", job.name, why)
                return RunStatus.SKIPPED
            lock = RedisLock(self.redis, job.name, self.lock_ttl_ms, replica_name(), job.lock_key)
            if job.exclusive and not await lock.acquire():
                log.info("job %s skipped: another replica holds the lock (%s)",
                         job.name, await lock.holder())
                return RunStatus.SKIPPED
            if job.exclusive:
                LOCK_CHANGES.labels(job=job.name, event="acquired").inc()
            try:
                async with lock.keep_alive() if job.exclusive else contextlib.nullcontext():
                    summary = await job.run(lock if job.exclusive else None)
            finally:
                if job.exclusive:
                    await lock.release()
            log.info("job %s ok: %s", job.name, summary)
            return RunStatus.OK
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("job %s failed: %s: %s", job.name, type(exc).__name__, exc)
            return RunStatus.FAILED

    async def run_all_once(self) -> bool:
        """Run every job once concurrently; True when none failed."""
        statuses = await asyncio.gather(*(self.run_once(j) for j in self.jobs))
        return all(s is not RunStatus.FAILED for s in statuses)

    async def run_forever(self) -> None:
        """Run each job every interval until stop(), then let in-flight runs finish.

        How long they may take is the caller's stop budget (streamer.ops.shutdown): it cancels
        this coroutine when the budget runs out, and the cancellation reaches every loop.
        """
        loops = [asyncio.create_task(self._loop(job)) for job in self.jobs]
        try:
            await self._stop.wait()
            await asyncio.gather(*loops)
        finally:
            for task in loops:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)

    async def _loop(self, job: Job) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            await self.run_once(job)
            while not self._stop.is_set():
                job.refresh()  # between runs: the next run and its interval use reloaded values
                remaining_s = started + job.interval_s - time.monotonic()
                if remaining_s <= 0:
                    break
                if self.live is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), remaining_s)
                else:
                    await self.live.wait(self._stop, remaining_s)
