"""Partials, the merge and its refusal to pass an incomplete merge as complete (real Redis)."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.config import Settings
from streamer.core.events import Event
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.core.window import window_at
from streamer.stream.partitioning import partition_for_post
from streamer.stream.publisher import Publisher, encode_posts, partial_key
from streamer.stream.state import PartitionState


class StubIngestor:
    """Just the states a publisher reads."""

    def __init__(self, states: dict[int, PartitionState]) -> None:
        self.states = states

    def advance_all(self, now_ms: int) -> None:
        for state in self.states.values():
            state.advance(now_ms)


def owned_states(partitions: list[int], total: int, now: int) -> dict[int, PartitionState]:
    """States of some partitions, with posts 0..199 counted where they belong."""
    states = {p: PartitionState(p, 60, now) for p in partitions}
    for post in range(200):
        state = states.get(partition_for_post(post, total))
        if state is not None:
            for i in range(post % 7 + 1):
                state.accept(Event(f"{post}-{i}", post, 1, "like", now - 1000))
    return states


def publisher(settings: Settings, redis: Redis, states: dict[int, PartitionState]) -> Publisher:
    return Publisher(settings, redis, StubIngestor(states), lambda: 4, None)  # type: ignore[arg-type]


class TestMerge:
    """The merger's view of partials."""

    async def test_complete_merge_is_the_exact_global_topk(
        self, settings: Settings, redis_client: Redis
    ) -> None:
        """Two workers' partials (2+2 partitions) merge into the global top-K with all partitions."""
        now = wall_ms()
        tick = now // 60_000
        a = publisher(settings, redis_client, owned_states([0, 1], 4, now))
        b = publisher(settings, redis_client, owned_states([2, 3], 4, now))
        await a.write_partials(tick, now)
        await b.write_partials(tick, now)
        assert await a._hold_lock() and not await b._hold_lock()
        await a.merge(tick, now)
        raw, meta = await redis_client.mget([trending_key(1), trending_meta_key(1)])
        assert raw is not None and meta is not None
        everyone = owned_states([0, 1, 2, 3], 4, now)
        want = sorted((p for s in everyone.values() for p in s.top(1000)), key=lambda p: p.key)[:50]
        assert decode_trending(raw) == want
        assert orjson.loads(meta)["partitions"] == [0, 1, 2, 3]

    async def test_missing_partition_keeps_previous_value(
        self, settings: Settings, redis_client: Redis
    ) -> None:
        """With a partial missing and a previous value present, the merge publishes nothing."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2], 4, now))
        await redis_client.set(trending_key(1), b"[]", px=60_000)
        await pub.write_partials(5, now)
        assert await pub._hold_lock()
        await pub.merge(5, now)
        assert await redis_client.get(trending_key(1)) == b"[]"

    async def test_missing_partition_without_previous_value_is_marked(
        self, settings: Settings, redis_client: Redis
    ) -> None:
        """Nothing to keep: the merge is published with the gap recorded (complete: false)."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2], 4, now))
        await pub.write_partials(6, now)
        assert await pub._hold_lock()
        await pub.merge(6, now)
        raw = await redis_client.get(trending_meta_key(1))
        assert raw is not None
        meta: dict[str, Any] = orjson.loads(raw)
        assert meta["missing_partitions"] == [3] and meta["complete"] is False

    async def test_stale_partials_count_as_missing(
        self, settings: Settings, redis_client: Redis
    ) -> None:
        """A partial from another tick or window is not merged."""
        now = wall_ms()
        pub = publisher(settings, redis_client, owned_states([0, 1, 2, 3], 4, now))
        await pub.write_partials(7, now)
        window = window_at(now, 60)
        stale = {"partition": 3, "tick": 6, "window_end_ms": window.end_ms, "window_start_ms": 0,
                 "top": encode_posts([PostCounts(1, 1)])}
        await redis_client.set(partial_key(1, 3), orjson.dumps(stale))
        _, present, missing = await pub.read_partials(7, window, 4)
        assert present == [0, 1, 2] and missing == [3]

