"""One suggestions run counts once in streamer_job_runs_total, however many polls, shards and
replicas it takes; shards have their own counter."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.jobs.suggestions import SuggestionsJob
from streamer.ops.metrics import JOB_RUNS, SUGGESTION_SHARDS
from streamer.settings.model import Settings
from tests.test_clickhouse_queries import NOW
from tests.test_jobs_suggestions import job_for, seeded


def runs(status: str) -> float:
    """The suggestions job's run counter for one status, in this process."""
    return float(JOB_RUNS.labels(job="suggestions", status=status)._value.get())


def shards() -> float:
    """Shards finished by this process."""
    return float(SUGGESTION_SHARDS._value.get())


async def test_two_replicas_and_later_polls_count_one_run(
    redis_client: Redis, redis_url: str, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Two replicas share one run of 6 shards: +1 success, +6 shards; polls before the next run
    is due (the runner calls the job every interval / 20) count nothing."""
    await seeded(clickhouse, 24)
    small = settings.model_copy(update={"job_suggestion_shards": 6,
                                        "job_suggestion_block_users": 4})
    other = Redis.from_url(redis_url)
    job_a, job_b = job_for(small, clickhouse, redis_client), job_for(small, clickhouse, other)
    job_a.owner, job_b.owner = "replica-a", "replica-b"
    before = {s: runs(s) for s in ("success", "skipped", "failure")}
    shards_before = shards()
    statuses = await asyncio.gather(JobRunner([job_a], redis_client, 2).run_once(job_a),
                                    JobRunner([job_b], other, 2).run_once(job_b))
    await other.aclose()
    assert RunStatus.FAILED not in statuses
    poller = SuggestionsJob(small, clickhouse, redis_client, clock=lambda: NOW + 1_000)
    runner = JobRunner([poller], redis_client, 2)
    for _ in range(3):
        assert await runner.run_once(poller) is RunStatus.SKIPPED  # not due: a poll, not a run
    assert {s: runs(s) - before[s] for s in before} == {"success": 1, "skipped": 0, "failure": 0}
    assert shards() - shards_before == 6


async def test_a_failed_attempt_counts_as_a_failure(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """The runner still counts an attempt that raised (the alert on failures relies on it)."""
    await seeded(clickhouse, 24)
    await clickhouse.command(f"DROP TABLE {clickhouse.database}.follows")
    job = job_for(settings, clickhouse, redis_client)
    before, ok_before = runs("failure"), runs("success")
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.FAILED
    assert (runs("failure") - before, runs("success") - ok_before) == (1, 0)
