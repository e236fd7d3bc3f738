"""ClickHouse-mode trending job end to end: value, meta, TTL, empty window, failures."""

from __future__ import annotations

import random
from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.core.events import Event
from streamer.core.payloads import trending_key, trending_meta_key
from streamer.core.window import window_at
from streamer.demo.services import free_port
from streamer.jobs.runner import JobRunner, RunStatus
from streamer.settings.model import Settings
from streamer.trending.job import ClickHouseTrendingJob
from tests.test_clickhouse_queries import (
    NOW,
    Dataset,
    boundary_events,
    load,
    make_events,
    oracle_trending,
    with_repeats,
)


def js(raw: bytes | str | None) -> Any:
    """Parse a JSON value that must exist."""
    assert raw is not None
    return orjson.loads(raw)


def job_for(settings: Settings, ch: ClickHouse, redis: Redis, **changes: int) -> ClickHouseTrendingJob:
    """The fallback-mode job (no standby) at the fixed NOW."""
    s = settings.model_copy(update=changes)
    return ClickHouseTrendingJob(s, ch, redis, standby=False, clock=lambda: NOW)


async def test_published_value_and_meta_equal_the_recount(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Duplicates, old and future events: the array is the brute-force top-50; meta and TTL."""
    rng = random.Random(31)
    window = window_at(NOW, 60)
    events = make_events(rng, 3000, 120, 50, 3 * 3_600_000) + boundary_events(window)
    events += [  # a long tail of posts so the top-50 cut is real
        Event(f"tail{i}", 200 + rng.randrange(200), 1, "view", NOW - rng.randrange(3_600_000))
        for i in range(400)
    ]
    data = Dataset(with_repeats(rng, events), [])
    await load(clickhouse, data)
    job = job_for(settings, clickhouse, redis_client)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    raw, meta_raw = await redis_client.mget(trending_key(1), trending_meta_key(1))
    want = oracle_trending(data.distinct(), window, 50)
    assert len(want) == 50 and len(oracle_trending(data.distinct(), window, 10_000)) > 100
    assert js(raw) == [p.to_payload() for p in want]
    meta = js(meta_raw)
    assert meta["generated_at_ms"] == NOW
    assert (meta["window_start_ms"], meta["window_end_ms"]) == (window.start_ms, window.end_ms)
    assert meta["mode"] == "clickhouse"
    assert meta["partitions"] == []
    for key in (trending_key(1), trending_meta_key(1)):
        assert 85_000 < await redis_client.pttl(key) <= 90_000


async def test_topk_window_hours_and_interval_settings(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """JOB_TRENDING_TOPK=5, a 2-hour window under `:2h`, TTL 1.5 x a 10 s interval."""
    rng = random.Random(32)
    data = Dataset(with_repeats(rng, make_events(rng, 1500, 40, 20, 3 * 3_600_000)), [])
    await load(clickhouse, data)
    job = job_for(settings, clickhouse, redis_client, job_trending_topk=5,
                  job_trending_window_hours=2, job_trending_interval_sec=10)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    want = oracle_trending(data.distinct(), window_at(NOW, 120), 5)
    assert js(await redis_client.get(trending_key(2))) == [p.to_payload() for p in want]
    assert await redis_client.exists(trending_key(1)) == 0
    assert 10_000 < await redis_client.pttl(trending_key(2)) <= 15_000


async def test_empty_window_writes_empty_array_and_meta(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """Only old events: `[]` is written, with its meta, replacing the previous list."""
    await redis_client.set(trending_key(1), b'[{"post_id": 1}]')
    start = window_at(NOW, 60).start_ms
    old = [Event(f"old{i}", i, 1, "share", start - 1 - i * 60_000) for i in range(20)]
    await load(clickhouse, Dataset(old + old, []))
    job = job_for(settings, clickhouse, redis_client)
    assert await JobRunner([job], redis_client, 2).run_once(job) is RunStatus.OK
    assert await redis_client.get(trending_key(1)) == b"[]"
    assert js(await redis_client.get(trending_meta_key(1)))["mode"] == "clickhouse"
    assert await redis_client.pttl(trending_key(1)) > 0


async def test_failed_run_leaves_previous_value_and_meta(
    redis_client: Redis, clickhouse: ClickHouse, settings: Settings
) -> None:
    """A query failure or an unreachable ClickHouse changes neither key."""
    rng = random.Random(33)
    await load(clickhouse, Dataset(make_events(rng, 500, 20, 10, 3_600_000), []))
    job = job_for(settings, clickhouse, redis_client)
    runner = JobRunner([job], redis_client, 2)
    assert await runner.run_once(job) is RunStatus.OK
    before = await redis_client.mget(trending_key(1), trending_meta_key(1))
    await clickhouse.command(f"DROP TABLE {clickhouse.database}.post_events")
    assert await runner.run_once(job) is RunStatus.FAILED
    assert await redis_client.mget(trending_key(1), trending_meta_key(1)) == before
    down = ClickHouse(f"http://127.0.0.1:{free_port()}", "nova", 2000)
    job_down = job_for(settings, down, redis_client)
    assert await JobRunner([job_down], redis_client, 2).run_once(job_down) is RunStatus.FAILED
    assert await redis_client.mget(trending_key(1), trending_meta_key(1)) == before
