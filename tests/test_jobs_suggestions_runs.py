"""Incremental runs, shards and takeovers against real Redis + embedded ClickHouse vs the oracle."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from streamer.cache.suggestions import RunStore
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import ddl
from streamer.core.events import Event
from streamer.core.payloads import suggestions_claim_key, suggestions_key
from streamer.errors import LockLost
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.jobs.suggestions import SuggestionsJob
from streamer.settings.model import Settings
from tests.reliability_helpers import FakeClickHouse
from tests.test_clickhouse_queries import NOW
from tests.test_core_suggest import oracle, same
from tests.test_jobs_suggestions import KeyWrites, stored

Edge = tuple[int, int]
USERS = 14


@dataclass
class World:
    """The follow graph and the active users, as loaded into ClickHouse."""

    edges: set[Edge]
    active: set[int]


def small(settings: Settings, **changes: int) -> Settings:
    """Tiny batches, blocks and shards so every path runs on a small graph."""
    base = {"job_suggestion_batch_size": 2, "job_suggestion_block_users": 3,
            "job_suggestion_shards": 3, "job_suggestions_per_user": 4}
    return settings.model_copy(update={**base, **changes})


def job(
    s: Settings, ch: ClickHouse, redis: Redis, clock_ms: int = NOW, full: bool = False
) -> SuggestionsJob:
    """A job at a fixed clock, run as `jobs --once` runs it."""
    return SuggestionsJob(s, ch, redis, clock=lambda: clock_ms, once=True, full=full)


async def reset(ch: ClickHouse, redis: Redis) -> None:
    """Empty tables and Redis between hypothesis examples."""
    await ch.command(f"TRUNCATE TABLE {ch.database}.follows")
    await ch.command(f"TRUNCATE TABLE {ch.database}.blocks")
    await ch.command(f"TRUNCATE TABLE {ch.database}.post_events")
    await redis.flushall()


async def activate(ch: ClickHouse, users: set[int], tag: str) -> None:
    """One event per user an hour ago."""
    events = [Event(f"{tag}-{u}", 1, u, "view", NOW - 3_600_000) for u in sorted(users)]
    await queries.insert_events(ch, events)


async def load_world(ch: ClickHouse, edges: set[Edge], active: set[int]) -> World:
    """Follows and active users into ClickHouse (tag "a"): the world the oracle checks against."""
    await queries.insert_follows(ch, [(a, b, NOW) for a, b in sorted(edges)])
    await activate(ch, active, "a")
    return World(set(edges), set(active))


async def random_world(ch: ClickHouse, seed: int, users: int, follows: int) -> World:
    """A seeded random graph over `users` accounts (all active), loaded into ClickHouse."""
    rng = random.Random(seed)
    edges = {(rng.randrange(users), rng.randrange(users)) for _ in range(follows)}
    return await load_world(ch, edges, set(range(users)))


async def unfollow(ch: ClickHouse, edges: set[Edge]) -> None:
    """Delete follow rows (an unfollow as a platform's pipeline would apply it)."""
    if edges:
        cond = " OR ".join(f"(follower_id = {a} AND followee_id = {b})" for a, b in sorted(edges))
        await ch.command(f"ALTER TABLE {ch.database}.follows DELETE WHERE {cond} "
                         "SETTINGS mutations_sync = 2")


async def check_all(redis: Redis, world: World, per_user: int) -> None:
    """Every active user's key equals the brute force over the current graph."""
    got = await stored(redis)
    assert world.active <= set(got)
    for u in world.active:
        same(got[u], oracle(u, world.edges, per_user))


async def run_ok(j: SuggestionsJob, redis: Redis) -> None:
    assert await JobRunner([j], redis, 2).run_once(j) is RunStatus.OK


edge_st = st.tuples(st.integers(0, USERS - 1), st.integers(0, USERS - 1))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edges=st.sets(edge_st, max_size=50),
    active=st.sets(st.integers(0, USERS - 1), min_size=1),
    added=st.sets(edge_st, max_size=8),
    removed_share=st.floats(0, 0.3),
    newly_active=st.sets(st.integers(0, USERS + 2), max_size=3),
    dropped_keys=st.sets(st.integers(0, USERS - 1), max_size=3),
    seed=st.integers(0, 1000),
)
async def test_incremental_run_equals_the_oracle_key_for_key(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings, edges: set[Edge],
    active: set[int], added: set[Edge], removed_share: float, newly_active: set[int],
    dropped_keys: set[int], seed: int,
) -> None:
    """Full run, then follows added and deleted, users newly active, keys gone: incremental == oracle."""
    await reset(clickhouse, redis_client)
    s = small(settings)
    world = await load_world(clickhouse, edges, active)
    await run_ok(job(s, clickhouse, redis_client), redis_client)
    await check_all(redis_client, world, 4)
    rng = random.Random(seed)
    removed = {e for e in sorted(edges) if rng.random() < removed_share}
    await unfollow(clickhouse, removed)
    await queries.insert_follows(clickhouse, [(a, b, NOW) for a, b in sorted(added)])
    await activate(clickhouse, newly_active, "b")
    world = World((world.edges - removed) | added, world.active | newly_active)
    for u in dropped_keys:
        await redis_client.delete(suggestions_key(u))  # expired or deleted between runs
    second = job(s, clickhouse, redis_client)
    await run_ok(second, redis_client)
    assert (await second.store.state()).mode == "incremental"  # type: ignore[union-attr]
    await check_all(redis_client, world, 4)


async def test_unchanged_users_are_renewed_not_rewritten(
    clickhouse: ClickHouse, redis_client: Redis, redis_url: str, settings: Settings
) -> None:
    """After one new follow, only that user and its followers are written; the rest renewed."""
    world = await random_world(clickhouse, 3, 30, 150)
    s = small(settings)
    await run_ok(job(s, clickhouse, redis_client), redis_client)
    await queries.insert_follows(clickhouse, [(7, 35, NOW)])  # 35: a new account
    world.edges.add((7, 35))
    affected = {7} | {a for a, b in world.edges if b == 7}
    unchanged = suggestions_key(min(set(range(30)) - affected))
    await redis_client.pexpire(unchanged, 50_000)  # as if written long ago
    async with KeyWrites(redis_url) as writes:
        await run_ok(job(s, clickhouse, redis_client, clock_ms=NOW + 5000), redis_client)
        await writes.settle()
    assert {int(k.rsplit(":", 1)[1]) for k in writes.counts} == affected
    assert await redis_client.pttl(unchanged) > 1_000_000  # renewed to the full TTL
    await check_all(redis_client, world, 4)


async def test_full_every_and_full_flag(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """First run full; then incremental until JOB_SUGGESTION_FULL_EVERY; --full forces one."""
    await queries.insert_follows(clickhouse, [(1, 2, NOW), (2, 3, NOW)])
    await activate(clickhouse, {1, 2}, "a")
    s = small(settings, job_suggestion_full_every=3)
    modes = []
    for full in (False, False, False, False, True):
        j = job(s, clickhouse, redis_client, full=full)  # a new process each time
        await run_ok(j, redis_client)
        modes.append((await j.store.state()).mode)  # type: ignore[union-attr]
    assert modes == ["full", "incremental", "incremental", "full", "full"]
    changed = s.model_copy(update={"job_suggestions_per_user": 2})
    j = job(changed, clickhouse, redis_client)
    await run_ok(j, redis_client)
    assert (await j.store.state()).mode == "full"  # type: ignore[union-attr]


async def test_dead_replica_leaves_its_shard_to_others(
    clickhouse: ClickHouse, redis_client: Redis, redis_url: str, settings: Settings
) -> None:
    """A shard claimed by a replica that died is skipped, then taken over once the claim expires."""
    world = await random_world(clickhouse, 5, 40, 200)
    s = small(settings, job_suggestion_shards=4)
    first = job(s, clickhouse, redis_client)
    run = await first._plan(None)
    assert run is not None
    dead = suggestions_claim_key(run.token, 2)
    await redis_client.set(dead, "dead-replica", px=60_000)
    async with KeyWrites(redis_url) as writes:
        summary = await first.run(None)
        assert "other shards left" in summary
        await redis_client.delete(dead)  # the dead replica's claim runs out (as PX would)
        other = job(s, clickhouse, Redis.from_url(redis_url))
        assert "run complete" in await other.run(None)
        await other.redis.aclose()
        await writes.settle()
    assert sorted(writes.counts.values()) == [1] * 40  # shard 2 written once, by the survivor
    await check_all(redis_client, world, 4)


async def test_fence_refuses_a_replica_whose_claim_was_taken(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """Claim taken over (or run lock gone): the next batch write raises LockLost, writes nothing."""
    await queries.insert_follows(clickhouse, [(1, 2, NOW)])
    await activate(clickhouse, {1}, "a")
    j = job(small(settings), clickhouse, redis_client)
    run = await j._plan(None)
    assert run is not None
    store = RunStore(redis_client, settings.streamer_app_id)
    claim = await store.claim(run, 0, "me")
    assert claim is not None
    await store.fence(run, 0, claim)
    await redis_client.set(suggestions_claim_key(run.token, 0), "someone-else")
    with pytest.raises(LockLost):
        await store.fence(run, 0, claim)
    await redis_client.set(suggestions_claim_key(run.token, 0), claim)
    await redis_client.delete(store.lock_key)
    with pytest.raises(LockLost):
        await store.fence(run, 0, claim)


async def test_overrun_is_counted_and_logged(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A run still working past its interval counts its users stale and says keys may expire."""
    await queries.insert_follows(clickhouse, [(1, 2, NOW), (2, 3, NOW)])
    await activate(clickhouse, {1, 2, 3}, "a")
    s = small(settings)
    j = job(s, clickhouse, redis_client)
    run = await j._plan(None)
    assert run is not None
    late = job(s, clickhouse, redis_client, clock_ms=NOW + s.job_suggestion_interval_sec * 1000 + 1)
    with caplog.at_level(logging.WARNING, logger="streamer.jobs.suggestions"):
        summary = await late.run(None)
    assert "3 stale" in summary and "run complete" in summary
    assert any("about to expire unrefreshed" in r.getMessage() for r in caplog.records)


async def test_same_sql_over_http(
    fake_ch: FakeClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """The planning and block queries bind their parameters over HTTP too (a server's path)."""
    for statement in ddl("nova"):
        fake_ch.sql(statement)
    http = ClickHouse(fake_ch.url, "nova", 30_000)
    world = await random_world(http, 8, 25, 120)
    s = small(settings).model_copy(update={"clickhouse_url": fake_ch.url})
    await run_ok(job(s, http, redis_client), redis_client)
    await check_all(redis_client, world, 4)
    await queries.insert_follows(http, [(3, 40, NOW)])
    world.edges.add((3, 40))
    second = job(s, http, redis_client)
    await run_ok(second, redis_client)
    assert (await second.store.state()).mode == "incremental"  # type: ignore[union-attr]
    await check_all(redis_client, world, 4)
    http.close()
