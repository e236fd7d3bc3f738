"""SuggestionsJob end to end: embedded ClickHouse -> Redis, every active user vs the oracle."""

from __future__ import annotations

import asyncio
import random
import secrets

import orjson
from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.core.payloads import suggestions_key
from streamer.core.suggest import Suggestion
from streamer.demo.services import free_port
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.jobs.suggestions import SuggestionsJob
from streamer.settings.model import Settings
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


def job_for(
    settings: Settings, ch: ClickHouse, redis: Redis, *, full: bool = False, **changes: int
) -> SuggestionsJob:
    """A SuggestionsJob as `jobs --once` builds it, at the fixed NOW, some settings changed."""
    s = settings.model_copy(update=changes)
    return SuggestionsJob(s, ch, redis, clock=lambda: NOW, once=True, full=full)


class KeyWrites:
    """Counts SETs of suggestion keys as Redis itself sees them (MONITOR), by key."""

    def __init__(self, redis_url: str) -> None:
        self.client = Redis.from_url(redis_url)
        self.counts: dict[str, int] = {}
        self.task: asyncio.Task[None] | None = None
        self.marker = secrets.token_hex(8)  # a fresh one per settle()
        self.reached = asyncio.Event()

    async def __aenter__(self) -> KeyWrites:
        started = asyncio.Event()

        async def listen() -> None:
            async with self.client.monitor() as mon:
                started.set()
                async for cmd in mon.listen():
                    words = str(cmd.get("command", "")).split()
                    if len(words) > 1 and words[0].upper() == "SET" and words[1].startswith(
                        "nova:cache:suggested_users:"
                    ):
                        self.counts[words[1]] = self.counts.get(words[1], 0) + 1
                    elif len(words) > 1 and words[0].upper() == "ECHO" and self.marker in words[1]:
                        self.reached.set()

        self.task = asyncio.create_task(listen())
        await asyncio.wait_for(started.wait(), 10)
        return self

    async def settle(self) -> None:
        """Wait until MONITOR has delivered every write made so far: it shows commands in the
        order Redis ran them, so once it shows an ECHO sent now, it has shown them all."""
        self.marker = secrets.token_hex(8)
        self.reached.clear()
        await self.client.echo(self.marker)
        try:
            await asyncio.wait_for(self.reached.wait(), 60)
        except TimeoutError:
            raise AssertionError(f"MONITOR never showed the marker; writes seen {self.counts}") from None

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.aclose()


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
    async with KeyWrites(settings.redis_url) as writes:
        assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
        await writes.settle()
    got = await stored(redis_client)
    assert sorted(got) == active
    assert 501 not in got and 500 in got and 502 in got
    for user in active:
        same(got[user], suggest_oracle(user, edges, 4))
    assert got[502] == []  # active, follows nobody
    assert sorted(writes.counts.values()) == [1] * len(active)  # each key written once
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


async def test_two_replicas_share_a_run(
    redis_client: Redis, redis_url: str, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Two runners start the real job together: they share one run, each key written once."""
    active, edges = await seeded(clickhouse, 24)
    other = Redis.from_url(redis_url)
    small = settings.model_copy(update={"job_suggestion_batch_size": 3,
                                        "job_suggestion_shards": 8,
                                        "job_suggestion_block_users": 6})
    job_a = job_for(small, clickhouse, redis_client)
    job_b = job_for(small, clickhouse, other)
    job_a.owner, job_b.owner = "replica-a", "replica-b"
    async with KeyWrites(redis_url) as writes:
        statuses = await asyncio.gather(
            JobRunner([job_a], redis_client, 2).run_once(job_a),
            JobRunner([job_b], other, 2).run_once(job_b),
        )
        await writes.settle()
    await other.aclose()
    # Both join the run unless one finished it before the other looked (then "skipped": done).
    assert statuses[0].value == "success" or statuses[1].value == "success"
    assert {s.value for s in statuses} <= {"success", "skipped"}
    assert sorted(writes.counts.values()) == [1] * len(active)  # no key written by both
    got = await stored(redis_client)
    assert sorted(got) == active
    for user in active:
        same(got[user], suggest_oracle(user, edges, 20))
