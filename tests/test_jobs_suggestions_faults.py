"""The suggestions job when things go wrong: a run nobody finished, a write that fails while the
next block's query runs, a plan that takes longer than the run lock's TTL (real Redis + chDB)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from streamer.cache.suggestions import RunState
from streamer.clickhouse.client import ClickHouse
from streamer.errors import LockLost
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.jobs.suggestions import ABANDON_AFTER_MS, Tally
from streamer.settings.model import Settings
from tests.test_clickhouse_queries import NOW
from tests.test_jobs_suggestions_runs import check_all, job, random_world, run_ok, small


async def test_a_run_left_open_for_half_a_day_is_planned_anew(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """Every replica died mid-run: a replica back after ABANDON_AFTER_MS plans run 2 and ends it."""
    world = await random_world(clickhouse, 11, 20, 80)
    s = small(settings)
    dead = await job(s, clickhouse, redis_client)._plan(None)
    assert dead is not None and dead.status == "running"
    await redis_client.delete(job(s, clickhouse, redis_client).store.lock_key)  # its lock ran out
    joined = job(s, clickhouse, redis_client, clock_ms=NOW + ABANDON_AFTER_MS)
    assert (await joined.store.state()).token == dead.token  # type: ignore[union-attr]
    await run_ok(joined, redis_client)  # not past the limit yet: joins and finishes run 1
    assert (await joined.store.state()).run_no == 1  # type: ignore[union-attr]

    await redis_client.delete(joined.store.lock_key)
    again = await job(s, clickhouse, redis_client)._plan(None)  # a second run, left open too
    assert again is not None
    await redis_client.delete(joined.store.lock_key)
    late = job(s, clickhouse, redis_client, clock_ms=again.plan_ms + ABANDON_AFTER_MS + 1)
    await run_ok(late, redis_client)
    state = await late.store.state()
    assert state is not None and state.token != again.token and state.status == "done"
    await check_all(redis_client, world, 4)


async def test_a_failed_write_leaves_no_query_running(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The write of block 1 fails while block 2's query runs: that query is cancelled."""
    await random_world(clickhouse, 12, 20, 80)
    j = job(small(settings, job_suggestion_shards=1), clickhouse, redis_client)
    run = await j._plan(None)
    assert run is not None
    queries: list[asyncio.Task[object]] = []
    real_query = j._query

    async def tracked_query(run: RunState, users: list[int]) -> object:
        task = asyncio.current_task()
        assert task is not None
        queries.append(task)
        if len(queries) > 1:
            await asyncio.Event().wait()  # a slow block query, still running at the failure
        return await real_query(run, users)

    async def failing_fence(*_: object) -> None:
        raise LockLost("claim taken")

    monkeypatch.setattr(j, "_query", tracked_query)
    monkeypatch.setattr(j.store, "fence", failing_fence)
    claim = await j.store.claim(run, 0, "me")
    assert claim is not None
    with pytest.raises(LockLost):
        await j._do_shard(run, 0, claim, Tally())
    assert len(queries) == 2
    assert all(t.done() for t in queries)
    assert queries[1].cancelled()


async def test_planning_longer_than_the_lock_ttl_keeps_the_lock(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A plan that takes 3 x the run lock's TTL still stores its run (the lock is kept alive)."""
    world = await random_world(clickhouse, 13, 20, 80)
    j = job(small(settings), clickhouse, redis_client)
    j.store.lock_ttl_ms = 1_000  # renewed every 333 ms: a stall of 0.6 s would still be covered
    real_snapshot = j.store.snapshot

    async def slow_snapshot() -> bytes | None:
        await asyncio.sleep(3.0)  # planning work that outlasts the TTL (not synchronisation)
        return await real_snapshot()

    monkeypatch.setattr(j.store, "snapshot", slow_snapshot)
    run = await j._plan(None)
    assert run is not None and (await j.store.state()).token == run.token  # type: ignore[union-attr]
    j.store.lock_ttl_ms = 30_000
    await run_ok(j, redis_client)
    await check_all(redis_client, world, 4)


async def test_once_full_fails_while_another_run_holds_the_keys(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """`jobs --once --full` while another replica's run holds the keys: a failed run (exit 1),
    not a silent skip; a plain `--once` joins that run and finishes it."""
    await random_world(clickhouse, 14, 10, 30)
    s = small(settings)
    other = await job(s, clickhouse, redis_client)._plan(None)
    assert other is not None
    full = job(s, clickhouse, redis_client, full=True)
    assert await JobRunner([full], redis_client, 2).run_once(full) is RunStatus.FAILED
    plain = job(s, clickhouse, redis_client)
    assert await JobRunner([plain], redis_client, 2).run_once(plain) is RunStatus.OK
    state = await plain.store.state()
    assert state is not None and state.token == other.token and state.status == "done"
