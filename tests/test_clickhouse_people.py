"""Counting people in ClickHouse mode: queries and the trending job against a brute-force recount."""

from __future__ import annotations

import random

import orjson
import pytest
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.core.events import Event
from streamer.core.payloads import trending_key, trending_meta_key
from streamer.core.people import Counting
from streamer.core.window import window_at
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.settings.model import Settings
from streamer.trending.job import ClickHouseTrendingJob
from tests.test_clickhouse_queries import (
    NOW,
    Dataset,
    boundary_events,
    load,
    make_events,
    with_repeats,
)
from tests.test_core_people import recount


def bursty(rng: random.Random) -> list[Event]:
    """Generated traffic plus one account sending many likes to one post."""
    window = window_at(NOW, 60)
    events = make_events(rng, 2500, 60, 40, 3 * 3_600_000) + boundary_events(window)
    events += [Event(f"burst{i}", 77, 5, "like", NOW - i * 1000) for i in range(1000)]
    return events


@pytest.mark.parametrize(("people", "min_people"), [(True, 1), (True, 3), (False, 4)])
async def test_trending_and_post_counts_equal_the_recount(
    clickhouse: ClickHouse, people: bool, min_people: int
) -> None:
    """Repeated ids, old and future events, a one-account burst: top-k and counters exact."""
    rng = random.Random(11 + min_people)
    data = Dataset(with_repeats(rng, bursty(rng)), [])
    await load(clickhouse, data)
    counting = Counting(people, min_people)
    window = window_at(NOW, 60)
    for k in (1, 5, 50, 10_000):
        got = await queries.trending(clickhouse, window, k, counting=counting)
        assert got == recount(data.distinct(), window, k, counting)
    everyone = {p.post_id: p for p in recount(data.distinct(), window, 10**6, Counting(people))}
    chosen = [0, 1, 2, 77, 999]
    got_counts = await queries.post_counts(clickhouse, window, chosen, counting=counting)
    assert {p.post_id: p for p in got_counts} == {p: everyone[p] for p in chosen if p in everyone}


async def test_burst_tops_events_not_people(clickhouse: ClickHouse) -> None:
    """1000 likes of one account: first by events, one like among people."""
    rng = random.Random(3)
    await load(clickhouse, Dataset(bursty(rng), []))
    window = window_at(NOW, 60)
    assert (await queries.trending(clickhouse, window, 1))[0].post_id == 77
    people = await queries.trending(clickhouse, window, 10_000, counting=Counting(True))
    assert next(p for p in people if p.post_id == 77).likes <= 2
    assert people[0].post_id != 77


async def test_job_publishes_people_list_and_meta(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """`jobs` with JOB_TRENDING_COUNT=people, JOB_TRENDING_MIN_PEOPLE=2: the recount; the meta
    names both."""
    rng = random.Random(21)
    data = Dataset(with_repeats(rng, bursty(rng)), [])
    await load(clickhouse, data)
    s = settings.model_copy(update={"job_trending_count": "people", "job_trending_min_people": 2})
    job = ClickHouseTrendingJob(s, clickhouse, redis_client, standby=False, clock=lambda: NOW)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    raw, meta_raw = await redis_client.mget(trending_key(1), trending_meta_key(1))
    assert raw is not None and meta_raw is not None
    want = recount(data.distinct(), window_at(NOW, 60), 50, Counting(True, 2))
    assert orjson.loads(raw) == [p.to_payload() for p in want]
    meta = orjson.loads(meta_raw)
    assert (meta["mode"], meta["count"], meta["min_people"]) == ("clickhouse", "people", 2)
