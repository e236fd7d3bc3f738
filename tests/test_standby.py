"""Standby trending publisher against real Redis and embedded ClickHouse."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.events import Event
from streamer.core.payloads import (
    TrendingMeta,
    decode_trending,
    trending_key,
    trending_lock_key,
    trending_meta_key,
)
from streamer.core.scoring import PostCounts
from streamer.core.window import window_at
from streamer.settings.model import Settings
from streamer.trending.job import clickhouse_trending, meta_and_age
from streamer.trending.standby import StandbyTrending
from streamer.trending.write import publish_trending
from tests.waiting import await_until

STREAM_POSTS = [PostCounts(1, views=1)]


async def age_keys(redis: Redis, settings: Settings, age_ms: int) -> None:
    """Make the current value and meta look written age_ms ago (the standby reads TTL - PTTL)."""
    for key in (trending_key(1), trending_meta_key(1)):
        await redis.pexpire(key, settings.trending_ttl_ms - age_ms)


async def stream_publish(redis: Redis, settings: Settings, now_ms: int) -> None:
    """What a stream merger writes: its list with meta mode "stream"."""
    window = window_at(now_ms, settings.window_minutes)
    meta = TrendingMeta(now_ms, window, "stream", [0, 1, 2, 3])
    await publish_trending(redis, settings.job_trending_window_hours, STREAM_POSTS, meta,
                           settings.trending_ttl_ms)


async def read(redis: Redis) -> tuple[list[PostCounts] | None, dict[str, Any] | None]:
    """Value and meta in one round trip."""
    raw, meta = await redis.mget(trending_key(1), trending_meta_key(1))
    return (None if raw is None else decode_trending(raw),
            None if meta is None else orjson.loads(meta))


@pytest.fixture
async def ch_posts(clickhouse: ClickHouse) -> list[PostCounts]:
    """A few events in the current window; returns ClickHouse's trending list for them."""
    now = wall_ms()
    events = [Event(f"c{i}", 100 + i % 3, 5, "like", now - 60_000 + i) for i in range(9)]
    await queries.insert_events(clickhouse, events)
    return await queries.trending(clickhouse, window_at(now, 60), 50)


def make_standby(settings: Settings, ch: ClickHouse, redis: Redis,
                 clock: Callable[[], int] = wall_ms, check_ms: int | None = None
                 ) -> StandbyTrending:
    """A standby with its own Redis client semantics shared with the test."""
    return StandbyTrending(settings, ch, redis, clock=clock, check_ms=check_ms)


class TestStandbyTicks:
    """Single checks with controlled key ages: when a standby publishes and when it keeps quiet."""

    async def test_publishes_when_meta_is_missing(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """No meta at all: the standby publishes ClickHouse's list, marked as its own."""
        sb = make_standby(settings, clickhouse, redis_client)
        assert (await sb.tick()).publish
        value, meta = await read(redis_client)
        assert value == ch_posts and meta is not None
        assert meta["mode"] == "clickhouse" and meta["source"] == "standby"
        assert meta["ttl_ms"] == sb.settings.trending_ttl_ms  # like every writer's meta
        assert meta["publisher"] == sb.lease.token and sb.state == "publishing"

    async def test_quiet_while_stream_meta_is_fresh(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """A stream publish written within 1.2 intervals keeps the standby idle."""
        await stream_publish(redis_client, settings, wall_ms())
        await age_keys(redis_client, settings, 71_000)
        sb = make_standby(settings, clickhouse, redis_client)
        assert not (await sb.tick()).publish
        value, meta = await read(redis_client)
        assert value == STREAM_POSTS and meta is not None and meta["mode"] == "stream"
        assert sb.state == "idle" and await redis_client.get(trending_lock_key(1, "standby")) is None

    async def test_takes_over_a_stale_stream_meta(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """Stream meta written 1.2 intervals ago (key still alive): the standby publishes."""
        await stream_publish(redis_client, settings, wall_ms())
        await age_keys(redis_client, settings, 72_000)
        sb = make_standby(settings, clickhouse, redis_client)
        assert (await sb.tick()).publish
        value, meta = await read(redis_client)
        assert value == ch_posts and meta is not None and meta["mode"] == "clickhouse"

    async def test_age_is_the_write_time_not_the_stamp(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """A meta stamped long ago but written just now (a slow merge, a skewed clock) is fresh."""
        await stream_publish(redis_client, settings, wall_ms() - 80_000)
        sb = make_standby(settings, clickhouse, redis_client)
        assert not (await sb.tick()).publish

    async def test_age_uses_the_writers_ttl_after_a_reload(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """The standby reloaded a 120 s interval (TTL 180 s), the stream still writes with 90 s:
        a publish just written is fresh, not 90 s old."""
        await stream_publish(redis_client, settings, wall_ms())
        slower = settings.model_copy(update={"job_trending_interval_sec": 120})
        _, age_ms = await meta_and_age(redis_client, slower, wall_ms())
        assert 0 <= age_ms < 60_000  # just written: far from the 90 s a wrong TTL reads as
        assert not (await make_standby(slower, clickhouse, redis_client).tick()).publish

    async def test_publishes_every_interval_while_publisher(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """Its own fresh meta: quiet mid-interval, publishes again when an interval is due."""
        sb = make_standby(settings, clickhouse, redis_client)
        assert (await sb.tick()).publish
        await age_keys(redis_client, settings, 30_000)
        decision = await sb.tick()
        assert not decision.publish and decision.mine and sb.state == "publishing"
        await age_keys(redis_client, settings, 58_000)
        assert (await sb.tick()).publish and sb.publishes == 2

    async def test_hands_back_when_the_stream_publishes_again(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """A fresh stream meta makes a publishing standby release its lease and go idle."""
        sb = make_standby(settings, clickhouse, redis_client)
        assert (await sb.tick()).publish
        assert await redis_client.get(trending_lock_key(1, "standby")) is not None
        await stream_publish(redis_client, settings, wall_ms())
        assert not (await sb.tick()).publish
        assert sb.state == "idle" and await redis_client.get(trending_lock_key(1, "standby")) is None
        assert (await read(redis_client))[0] == STREAM_POSTS

    async def test_no_write_when_the_stream_publishes_during_the_query(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The write is watched: a stream publish between check and write wins."""
        real = clickhouse_trending

        async def racing(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)
            await stream_publish(redis_client, settings, wall_ms())
            return result

        monkeypatch.setattr("streamer.trending.standby.clickhouse_trending", racing)
        sb = make_standby(settings, clickhouse, redis_client)
        await sb.tick()
        value, meta = await read(redis_client)
        assert value == STREAM_POSTS and meta is not None and meta["mode"] == "stream"
        assert sb.publishes == 0 and sb.state == "idle"

    async def test_own_lease_renewal_during_the_write_does_not_abort_it(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The lease is renewed (PEXPIRE) between WATCH and EXEC: the publish still goes out."""
        sb = make_standby(settings, clickhouse, redis_client)
        real = meta_and_age
        calls: list[int] = []

        async def renewing(redis: Any, *args: Any) -> Any:
            calls.append(1)
            if len(calls) == 2:  # the check inside the watched write
                assert await sb.lease.extend()
            return await real(redis, *args)

        monkeypatch.setattr("streamer.trending.standby.meta_and_age", renewing)
        assert (await sb.tick()).publish
        assert sb.publishes == 1 and len(calls) == 2
        assert (await read(redis_client))[0] == ch_posts

    async def test_second_standby_does_not_write(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """While one standby holds the lease, another never publishes, even on a stale meta."""
        first = make_standby(settings, clickhouse, redis_client)
        second = make_standby(settings, clickhouse, redis_client)
        assert (await first.tick()).publish
        assert not (await second.tick()).publish
        await age_keys(redis_client, settings, 80_000)
        assert not (await second.tick()).publish
        assert (await first.tick()).publish
        _, meta = await read(redis_client)
        assert meta is not None and meta["publisher"] == first.lease.token
        assert (first.publishes, second.publishes) == (2, 0)


@dataclass
class Observation:
    """What the poller saw, in order."""

    samples: list[tuple[list[PostCounts] | None, dict[str, Any] | None]] = field(
        default_factory=list)


async def poll(redis: Redis, seen: Observation, stop: asyncio.Event) -> None:
    """Read value and meta every 20 ms until stopped."""
    while not stop.is_set():
        seen.samples.append(await read(redis))
        await asyncio.sleep(0.02)


async def fake_stream(redis: Redis, settings: Settings, stop: asyncio.Event) -> None:
    """Publish like a stream worker every interval until stopped."""
    while not stop.is_set():
        await stream_publish(redis, settings, wall_ms())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.job_trending_interval_sec)


def stream_publishes(seen: Observation, since: int) -> int:
    """Distinct stream publishes among the samples from index `since` on."""
    return len({m["generated_at_ms"] for _, m in seen.samples[since:]
                if m is not None and m["mode"] == "stream"})


@contextlib.asynccontextmanager
async def running(
    fn: Callable[[asyncio.Event], Coroutine[Any, Any, None]],
) -> AsyncIterator[None]:
    """Run fn(stop) in the background for the body's duration."""
    stop = asyncio.Event()
    task = asyncio.create_task(fn(stop))
    try:
        yield
    finally:
        stop.set()
        await task


class TestStandbyLive:
    """Two standbys beside a stream that stops and restarts, with the key watched throughout."""

    async def test_takeover_and_handback_without_a_gap(
        self, settings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        ch_posts: list[PostCounts],
    ) -> None:
        """Stream stops: one standby publishes within 2 intervals; stream back: it stops.

        The key and meta are present and consistent with each other in every sample."""
        s = settings.model_copy(update={"job_trending_interval_sec": 3})
        a, b = (make_standby(s, clickhouse, redis_client, check_ms=100) for _ in range(2))
        seen = Observation()
        await stream_publish(redis_client, s, wall_ms())
        async with running(lambda st: poll(redis_client, seen, st)), \
                running(a.run_forever), running(b.run_forever):
            async with running(lambda st: fake_stream(redis_client, s, st)):
                await await_until(lambda: stream_publishes(seen, 0) >= 3, 60,
                                  "three stream publishes beside the standbys")
            assert a.publishes == b.publishes == 0
            stream_stopped_at = len(seen.samples)
            await await_until(lambda: a.publishes + b.publishes >= 3, 20, "three publishes")
            restarted_at = len(seen.samples)
            async with running(lambda st: fake_stream(redis_client, s, st)):
                await await_until(lambda: a.state == b.state == "idle", 30, "both standbys idle")
                idle_at = len(seen.samples)
                await await_until(lambda: stream_publishes(seen, idle_at) >= 2, 60,
                                  "two stream publishes after the handback")
        self.check_samples(seen, ch_posts, stream_stopped_at, restarted_at, s)
        assert {a.publishes == 0, b.publishes == 0} == {True, False}  # exactly one writer
        assert await redis_client.get(trending_lock_key(1, "standby")) is None

    @staticmethod
    def check_samples(seen: Observation, ch_posts: list[PostCounts], stopped: int,
                      restarted: int, s: Settings) -> None:
        """No gap, no mixed value/meta, takeover in time, no standby write after the restart."""
        metas = []
        for value, meta in seen.samples:
            assert value is not None and meta is not None, "trending key or meta missing"
            expected = STREAM_POSTS if meta["mode"] == "stream" else ch_posts
            assert value == expected, "value and meta from different publishers"
            metas.append(meta)
        last_stream = max(m["generated_at_ms"] for m in metas[:stopped] if m["mode"] == "stream")
        first_standby = min(m["generated_at_ms"] for m in metas if m.get("source") == "standby")
        assert first_standby > last_stream  # the outcome; no duration (the suite asserts none)
        assert len({m["publisher"] for m in metas if m.get("source") == "standby"}) == 1
        back = next(i for i in range(restarted, len(metas)) if metas[i]["mode"] == "stream")
        assert all(m["mode"] == "stream" for m in metas[back:])
