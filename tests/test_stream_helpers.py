"""The end-to-end waits can fail: settle_exact never passes on a missing, stale or wrong publish."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.core.payloads import TrendingMeta
from streamer.core.window import window_at
from streamer.trending.write import publish_trending
from tests.stream_helpers import NotSettled, event, oracle, settle_exact


def events_now() -> list[dict[str, object]]:
    """Three events of two posts, a second ago."""
    ts = wall_ms() - 1000
    return [event("a", 1, ts), event("b", 1, ts, "like"), event("c", 2, ts)]


async def publish(redis: Redis, events: list[dict[str, object]], generated_ms: int,
                  partitions: list[int], wrong: bool = False) -> None:
    """A stream publish of the oracle over its window (or of a wrong list)."""
    window = window_at(generated_ms, 60)
    posts = oracle(events, window, 50)
    await publish_trending(redis, 1, posts[::-1] if wrong else posts,
                           TrendingMeta(generated_ms, window, "stream", partitions), 60_000)


async def test_nothing_published_raises(redis_client: Redis) -> None:
    """No publish at all: a timeout that says so, never empty results."""
    with pytest.raises(NotSettled, match="none seen"):
        await settle_exact(redis_client, events_now(), 2, timeout_s=0.5)


async def test_a_publish_from_before_the_restart_does_not_count(redis_client: Redis) -> None:
    """An exact publish generated before `after_ms` (the killed worker's) is not accepted."""
    events = events_now()
    await publish(redis_client, events, wall_ms() - 2000, [0, 1])
    with pytest.raises(NotSettled):
        await settle_exact(redis_client, events, 2, timeout_s=0.5, after_ms=wall_ms() - 1000)
    posts, want, _ = await settle_exact(redis_client, events, 2, timeout_s=5)
    assert posts == want and len(posts) == 2


async def test_incomplete_or_wrong_publishes_raise_with_what_was_seen(redis_client: Redis) -> None:
    """A publish missing a partition, then a complete wrong one: the error shows the last."""
    events = events_now()
    await publish(redis_client, events, wall_ms(), [0])
    with pytest.raises(NotSettled, match="none seen"):
        await settle_exact(redis_client, events, 2, timeout_s=0.5)
    await publish(redis_client, events, wall_ms(), [0, 1], wrong=True)
    with pytest.raises(NotSettled, match="first differences") as info:
        await settle_exact(redis_client, events, 2, timeout_s=0.5)
    assert info.value.last is not None and info.value.last[0] != info.value.last[1]
