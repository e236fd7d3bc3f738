"""Merge requests, answers, the merge and its fallback instead of an incomplete merge (real Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.events import Event
from streamer.core.partition_state import PartitionState
from streamer.core.partitioning import partition_for_post
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.core.window import Window, window_at
from streamer.jobs.reconcile import make_stream_reconciler
from streamer.settings.model import Settings
from streamer.trending.merger import Publisher
from tests.state_helpers import accept


class StubIngestor:
    """Just the states a publisher reads."""

    def __init__(self, states: dict[int, PartitionState]) -> None:
        self.states = states

    def advance_all(self, now_ms: int) -> None:
        for state in self.states.values():
            state.advance(now_ms)


def owned_states(partitions: list[int], total: int, now: int, seed: int = 0) -> dict[int, PartitionState]:
    """States of some partitions, with posts 0..199 counted where they belong."""
    states = {p: PartitionState(p, 60, now) for p in partitions}
    for post in range(200):
        state = states.get(partition_for_post(post, total))
        if state is not None:
            for i in range((post + seed) % 7 + 1):
                accept(state, Event(f"{seed}-{post}-{i}", post, 1, "like", now - 1000))
    return states


def publisher(settings: Settings, redis: Redis, states: dict[int, PartitionState],
              ch: ClickHouse) -> Publisher:
    """A publisher over these states (4 partitions), falling back to `ch`."""
    return Publisher(settings, redis, StubIngestor(states), lambda: 4, ch)


def global_top(states: dict[int, PartitionState], window: Window) -> list[PostCounts]:
    """Brute force over every partition's exact counts."""
    every = [p for s in states.values() for p in s.complete_partial(window, 10_000).posts]
    return sorted(every, key=lambda p: p.key)[:50]


@contextlib.asynccontextmanager
async def answering(*pubs: Publisher) -> AsyncIterator[None]:
    """Other workers' answer loops, running while the body merges."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p._answer_loop(stop)) for p in pubs]
    try:
        yield
    finally:
        stop.set()
        await asyncio.gather(*tasks)


class TestMerge:
    """The merger names the window; every worker answers for it; nothing incomplete passes."""

    async def test_complete_merge_is_the_exact_global_topk(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """Two workers' answers (2+2 partitions) merge into the global top-K with all partitions."""
        now = wall_ms()
        a = publisher(settings, redis_client, owned_states([0, 1], 4, now), clickhouse)
        b = publisher(settings, redis_client, owned_states([2, 3], 4, now), clickhouse)
        assert await a._hold_lock() and not await b._hold_lock()
        async with answering(b):
            await a.merge(now)
        raw, meta = await redis_client.get(trending_key(1)), await redis_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None
        want = global_top(owned_states([0, 1, 2, 3], 4, now), window_at(now, 60))
        assert decode_trending(raw) == want and want
        assert orjson.loads(meta)["partitions"] == [0, 1, 2, 3]
        assert orjson.loads(meta)["mode"] == "stream"

    async def test_merge_is_exact_when_a_worker_clock_is_behind(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """A worker 5 s behind, just after a minute boundary, still answers for the merger's
        window: it advances to the merger's time, and events of the new minute count."""
        now = (wall_ms() // 60_000) * 60_000 + 1_000  # 1 s into the merger's minute
        behind = now - 5_000  # the other worker still lives in the previous minute
        states_b = {p: PartitionState(p, 60, behind) for p in (2, 3)}
        for post in range(200):
            state = states_b.get(partition_for_post(post, 4))
            if state is not None:  # half in the previous minute, half in the new one
                accept(state, Event(f"b-{post}", post, 1, "share", now - 500 if post % 2 else behind))
        a = publisher(settings, redis_client, owned_states([0, 1], 4, now), clickhouse)
        b = publisher(settings, redis_client, states_b, clickhouse)
        assert await a._hold_lock()
        async with answering(b):
            await a.merge(now)
        raw, meta = await redis_client.get(trending_key(1)), await redis_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None and orjson.loads(meta)["complete"] is True
        both = {**owned_states([0, 1], 4, now), **states_b}
        assert decode_trending(raw) == global_top(both, window_at(now, 60))

    async def test_missing_partition_keeps_previous_value(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """A partition unanswered and the current value outliving the next try: nothing is published."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2], 4, now), clickhouse)
        await redis_client.set(trending_key(1), b"[]", px=600_000)
        assert await pub._hold_lock()
        await pub.merge(now)
        assert await redis_client.get(trending_key(1)) == b"[]"
        assert await redis_client.get(trending_meta_key(1)) is None

    async def test_missing_partition_with_key_expired_publishes_clickhouse(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """No value to keep: never the incomplete merge; ClickHouse's exact result, mode clickhouse."""
        now = wall_ms()
        events = [Event(f"ch-{i}", i % 9, 1, "comment", now - 2_000) for i in range(50)]
        await queries.insert_events(clickhouse, events)
        pub = publisher(settings, redis_client, owned_states([0, 1, 2], 4, now), clickhouse)
        assert await pub._hold_lock()
        await pub.merge(now)
        raw, meta = await redis_client.get(trending_key(1)), await redis_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None
        assert orjson.loads(meta)["mode"] == "clickhouse"
        assert orjson.loads(meta)["reason"] == "incomplete merge"
        assert decode_trending(raw) == await queries.trending(clickhouse, window_at(now, 60), 50)
        assert len(decode_trending(raw)) == 9

    async def test_fallback_after_setting_without_a_complete_merge(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """The value still lives, but no complete merge for STREAMER_FALLBACK_AFTER_SEC: ClickHouse."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2], 4, now), clickhouse)
        await redis_client.set(trending_key(1), b"[]", px=600_000)
        pub.last_complete_ms = now - settings.streamer_fallback_after_sec * 1000
        assert await pub._hold_lock()
        await pub.merge(now)
        meta = await redis_client.get(trending_meta_key(1))
        assert meta is not None and orjson.loads(meta)["mode"] == "clickhouse"

    async def test_drift_publishes_clickhouse_without_a_merge(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """The drift policy chose ClickHouse: its result is published and no request is made."""
        now = wall_ms()
        await queries.insert_events(clickhouse, [Event(f"d-{i}", i % 5, 1, "share", now - 2_000)
                                                 for i in range(20)])
        hook = make_stream_reconciler(settings, clickhouse, redis_client)
        hook.reconciler.policy.use_clickhouse = True  # as after JOB_RECONCILE drift runs
        pub = Publisher(settings, redis_client, StubIngestor(owned_states([0, 1, 2, 3], 4, now)),
                        lambda: 4, clickhouse, hook)
        assert await pub._hold_lock()
        await pub.merge(now)
        raw, meta = await redis_client.get(trending_key(1)), await redis_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None
        assert orjson.loads(meta)["mode"] == "clickhouse" and orjson.loads(meta)["reason"] == "drift"
        assert decode_trending(raw) == await queries.trending(clickhouse, window_at(now, 60), 50)
        assert await pub.exchange.current() is None  # no merge request was written

    async def test_answers_to_another_request_count_as_missing(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """An answer left from an earlier request is not merged."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2, 3], 4, now), clickhouse)
        old = await pub.exchange.request(now - 2_000, 50)
        await pub.answer(old)
        new = await pub.exchange.request(now, 50)
        answers = await pub.exchange.collect(new, 4)
        assert answers.present == [] and answers.missing == [0, 1, 2, 3]
        await pub.answer(new)
        assert (await pub.exchange.collect(new, 4)).present == [0, 1, 2, 3]

