"""JobRunner on a real redis-server: lock exclusivity, concurrency bound, failures, stop."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from streamer.cache.lock import RedisLock
from streamer.core.payloads import lock_key
from streamer.demo.services import free_port
from streamer.jobs.base import Job
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.ops.metrics import JOB_RUNS
from tests.waiting import await_until


def unreachable_redis() -> Redis:
    """A client for a closed port that fails at once (no retries with backoff)."""
    return Redis(port=free_port(), socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))


class Probe(Job):
    """A job that records how many copies of itself run at once."""

    def __init__(self, name: str, hold_s: float = 0.2, exclusive: bool = True, fail: bool = False) -> None:
        self.name = name
        self.exclusive = exclusive
        self.interval_s = 0.05
        self.hold_s = hold_s
        self.fail = fail
        self.running = 0
        self.peak = 0
        self.runs = 0
        self.locks: list[RedisLock | None] = []

    async def run(self, lock: RedisLock | None) -> str:
        """Hold for a while; fail when asked."""
        self.runs += 1
        self.running += 1
        self.peak = max(self.peak, self.running)
        self.locks.append(lock)
        try:
            await asyncio.sleep(self.hold_s)
            if self.fail:
                raise RuntimeError("boom from probe")
            return "probe ok"
        finally:
            self.running -= 1


class SharedCounter:
    """Counts concurrent runs across several Probe instances (two replicas of one job)."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0


class ReplicaProbe(Probe):
    """The same job name on another replica, sharing a concurrency counter."""

    def __init__(self, name: str, shared: SharedCounter) -> None:
        super().__init__(name, hold_s=0.3)
        self.shared = shared

    async def run(self, lock: RedisLock | None) -> str:
        """Count in the shared counter around the probe's run."""
        self.shared.running += 1
        self.shared.peak = max(self.shared.peak, self.shared.running)
        try:
            return await super().run(lock)
        finally:
            self.shared.running -= 1


async def test_two_runners_race_one_runs(redis_client: Redis, redis_url: str) -> None:
    """Two replicas start the same exclusive job at once: one runs, the other skips."""
    other = Redis.from_url(redis_url)
    shared = SharedCounter()
    a, b = ReplicaProbe("race", shared), ReplicaProbe("race", shared)
    runner_a = JobRunner([a], redis_client, 2)
    runner_b = JobRunner([b], other, 2)
    statuses = await asyncio.gather(runner_a.run_once(a), runner_b.run_once(b))
    assert sorted(s.value for s in statuses) == ["skipped", "success"]
    assert a.runs + b.runs == 1
    assert shared.peak == 1
    assert await redis_client.exists(lock_key("race")) == 0  # released after the run
    await other.aclose()


async def test_many_racing_rounds_never_overlap(redis_client: Redis, redis_url: str) -> None:
    """Four replicas looping on one job never run it concurrently."""
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    shared = SharedCounter()
    probes = [ReplicaProbe("loop", shared) for _ in clients]
    for p in probes:
        p.hold_s = 0.05
    runners = [JobRunner([p], c, 1) for p, c in zip(probes, clients, strict=True)]
    for _ in range(5):
        await asyncio.gather(*(r.run_once(p) for r, p in zip(runners, probes, strict=True)))
    assert shared.peak == 1
    assert sum(p.runs for p in probes) >= 5
    for c in clients:
        await c.aclose()


async def test_exclusive_job_gets_its_held_lock(redis_client: Redis) -> None:
    """The lock handed to run() is held and is the key's current token."""
    seen: list[bool] = []

    class Check(Probe):
        async def run(self, lock: RedisLock | None) -> str:
            assert lock is not None and lock.held
            seen.append(await lock.holder() == lock.token)
            return "ok"

    job = Check("fenced")
    assert await JobRunner([job], redis_client, 1).run_once(job) is RunStatus.OK
    assert seen == [True]
    free = Probe("free", hold_s=0, exclusive=False)
    assert await JobRunner([free], redis_client, 1).run_once(free) is RunStatus.OK
    assert free.locks == [None]


async def test_lock_held_elsewhere_skips(redis_client: Redis) -> None:
    """A lock taken by another replica makes the run a skip, not a failure."""
    await redis_client.set(lock_key("busy"), "other-replica", px=60_000)
    job = Probe("busy", hold_s=0)
    assert await JobRunner([job], redis_client, 1).run_once(job) is RunStatus.SKIPPED
    assert job.runs == 0
    assert await redis_client.get(lock_key("busy")) == b"other-replica"


async def test_failure_is_logged_counted_and_releases_the_lock(
    redis_client: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A raising job: FAILED status, an error log line with the job and reason, lock freed."""
    job = Probe("breaks", hold_s=0, fail=True)
    runner = JobRunner([job], redis_client, 1)
    before = JOB_RUNS.labels(job="breaks", status="failure")._value.get()
    with caplog.at_level(logging.ERROR, logger="streamer.jobs"):
        assert await runner.run_once(job) is RunStatus.FAILED
    assert any("breaks" in r.getMessage() and "boom from probe" in r.getMessage() for r in caplog.records)
    assert JOB_RUNS.labels(job="breaks", status="failure")._value.get() == before + 1
    assert await redis_client.exists(lock_key("breaks")) == 0
    assert runner.last_status["breaks"] is RunStatus.FAILED
    assert not await runner.run_all_once()


async def test_should_run_false_skips() -> None:
    """A job that declines the tick is skipped without touching Redis."""

    class Declines(Probe):
        async def should_run(self) -> tuple[bool, str]:
            return False, "not my turn"

    job = Declines("declines")
    unreachable = unreachable_redis()
    assert await JobRunner([job], unreachable, 1).run_once(job) is RunStatus.SKIPPED
    await unreachable.aclose()


async def test_redis_down_fails_the_run_without_raising() -> None:
    """Redis unreachable: the exclusive job's run fails (lock cannot be taken), no exception."""
    job = Probe("nored", hold_s=0)
    unreachable = unreachable_redis()
    runner = JobRunner([job], unreachable, 1)
    assert await runner.run_once(job) is RunStatus.FAILED
    assert not await runner.run_all_once()
    assert job.runs == 0
    await unreachable.aclose()


async def test_max_concurrent_bounds_parallel_runs(redis_client: Redis) -> None:
    """JOB_MAX_CONCURRENT=2 with three jobs: never more than two at once."""
    running = SharedCounter()

    class Counted(Probe):
        async def run(self, lock: RedisLock | None) -> str:
            running.running += 1
            running.peak = max(running.peak, running.running)
            try:
                return await super().run(lock)
            finally:
                running.running -= 1

    jobs = [Counted(f"c{i}", hold_s=0.2) for i in range(3)]
    assert await JobRunner(jobs, redis_client, 2).run_all_once()
    assert running.peak == 2


async def test_run_forever_retries_after_failures_and_stops(redis_client: Redis) -> None:
    """A failing job is retried every tick; stop() ends the loops promptly."""
    bad = Probe("flaky", hold_s=0, fail=True)
    good = Probe("steady", hold_s=0)
    runner = JobRunner([bad, good], redis_client, 2)
    task = asyncio.create_task(runner.run_forever())
    await await_until(lambda: bad.runs >= 3 and good.runs >= 3, 30, "three runs of each job", 0.05)
    runner.stop()
    await asyncio.wait_for(task, 10)
    assert bad.runs >= 3 and good.runs >= 3
    assert runner.last_status == {"flaky": RunStatus.FAILED, "steady": RunStatus.OK}
