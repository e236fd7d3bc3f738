"""SuggestionsJob end to end: embedded ClickHouse -> Redis, every active user vs the oracle."""

from __future__ import annotations

import asyncio
import random

import orjson
from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.config import Settings
from streamer.core.payloads import suggestions_key
from streamer.core.suggest import Suggestion
from streamer.demo.services import free_port
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.jobs.suggestions import SuggestionsJob
from tests.test_clickhouse_queries import (
    NOW,
    Dataset,
    activity,
    load,
    oracle_active,
    random_graph,
    with_repeats,
)
from tests.test_core_suggest import oracle as suggest_oracle
from tests.test_core_suggest import same

KEY_PATTERN = "nova:cache:suggested_users:*"


async def seeded(ch: ClickHouse, seed: int) -> tuple[list[int], list[tuple[int, int]]]:
    """Activity for users 0..59 (+ edge cases 500-502) and a graph over 0..69; active users."""
    rng = random.Random(seed)
    events = activity(rng, 60)
    edges = [*random_graph(rng, 70, 500), (500, 1), (1, 500)]
    await load(ch, Dataset(with_repeats(rng, events), edges))
    return oracle_active(events, NOW), edges


def job_for(settings: Settings, ch: ClickHouse, redis: Redis, **changes: int) -> SuggestionsJob:
    """A SuggestionsJob at the fixed NOW with some settings changed."""
    s = settings.model_copy(update=changes)
    return SuggestionsJob(s, ch, redis, clock=lambda: NOW)


async def stored(redis: Redis) -> dict[int, list[Suggestion]]:
    """Every suggestions key in Redis, parsed."""
    out: dict[int, list[Suggestion]] = {}
    async for key in redis.scan_iter(match=KEY_PATTERN):
        raw = await redis.get(key)
        assert raw is not None
        user = int(key.decode().rsplit(":", 1)[1])
        out[user] = [Suggestion(**o) for o in orjson.loads(raw)]
    return out


async def test_every_active_user_gets_the_oracle_and_nobody_else(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Keys for exactly the active users, values equal to the brute force, TTL 2 x interval."""
    active, edges = await seeded(clickhouse, 21)
    job = job_for(settings, clickhouse, redis_client, job_suggestion_batch_size=7,
                  job_suggestions_per_user=4)
    await redis_client.config_resetstat()
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    got = await stored(redis_client)
    assert sorted(got) == active
    assert 501 not in got and 500 in got and 502 in got
    for user in active:
        same(got[user], suggest_oracle(user, edges, 4))
    assert got[502] == []  # active, follows nobody
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_exec"]["calls"] == (len(active) + 6) // 7  # one pipeline per batch
    for user in active:
        assert 1_190_000 < await redis_client.pttl(suggestions_key(user)) <= 1_200_000


async def test_default_settings_twenty_per_user(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """With the contract defaults (100 per batch, 20 per user) the values match too."""
    active, edges = await seeded(clickhouse, 22)
    job = job_for(settings, clickhouse, redis_client)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    got = await stored(redis_client)
    assert sorted(got) == active
    for user in active:
        same(got[user], suggest_oracle(user, edges, 20))


async def test_no_active_users_writes_nothing(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """An empty event table: the run succeeds and no key appears."""
    job = job_for(settings, clickhouse, redis_client)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    assert await stored(redis_client) == {}


async def test_failed_run_leaves_previous_values(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """ClickHouse failing (table gone, server down) keeps the last good values in place."""
    await seeded(clickhouse, 23)
    job = job_for(settings, clickhouse, redis_client, job_suggestion_batch_size=5)
    runner = JobRunner([job], redis_client, 2)
    assert await runner.run_once(job) is RunStatus.OK
    keys = sorted([k async for k in redis_client.scan_iter(match=KEY_PATTERN)])
    before = await redis_client.mget(keys)
    await clickhouse.command(f"DROP TABLE {clickhouse.database}.follows")
    assert await runner.run_once(job) is RunStatus.FAILED
    assert await redis_client.mget(keys) == before
    down = ClickHouse(f"http://127.0.0.1:{free_port()}", "nova", 2000)
    job_down = job_for(settings, down, redis_client)
    assert await JobRunner([job_down], redis_client, 2).run_once(job_down) is RunStatus.FAILED
    assert await redis_client.mget(keys) == before


async def test_two_replicas_racing_publish_once(
    redis_client: Redis, redis_url: str, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Two runners start the real job together: one publishes, the other skips."""
    active, edges = await seeded(clickhouse, 24)
    other = Redis.from_url(redis_url)
    job_a = job_for(settings, clickhouse, redis_client)
    job_b = job_for(settings, clickhouse, other)
    statuses = await asyncio.gather(
        JobRunner([job_a], redis_client, 2).run_once(job_a),
        JobRunner([job_b], other, 2).run_once(job_b),
    )
    await other.aclose()
    assert sorted(s.value for s in statuses) == ["skipped", "success"]
    got = await stored(redis_client)
    assert sorted(got) == active
    for user in active[:10]:
        same(got[user], suggest_oracle(user, edges, 20))
