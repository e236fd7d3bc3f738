"""Workers that disagree on JOB_TRENDING_TOPK for a tick still publish an exact top-K (real Redis)."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.config import Settings
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.stream.publisher import partial_depth
from tests.test_stream_publisher import owned_states, publisher


def everyone_top(now: int, k: int) -> list[PostCounts]:
    """Brute force: every post of every partition, ranked by the contract."""
    states = owned_states([0, 1, 2, 3], 4, now)
    return rank_posts([p for s in states.values() for p in s.top(10_000)], k)


@pytest.mark.parametrize(("merger_k", "other_k"), [(50, 3), (3, 50), (20, 7), (7, 7)])
async def test_merger_with_other_topk_publishes_an_exact_list(
    settings: Settings, redis_client: Redis, merger_k: int, other_k: int
) -> None:
    """The merger's K decides; partials shallower than it limit the list to their (exact) depth."""
    now = wall_ms()
    tick = now // 60_000
    merger = publisher(settings.model_copy(update={"job_trending_topk": merger_k}), redis_client,
                       owned_states([0, 1], 4, now))
    other = publisher(settings.model_copy(update={"job_trending_topk": other_k}), redis_client,
                      owned_states([2, 3], 4, now))
    await merger.write_partials(tick, now)
    await other.write_partials(tick, now)
    assert await merger._hold_lock()
    await merger.merge(tick, now)
    raw, raw_meta = await redis_client.mget([trending_key(1), trending_meta_key(1)])
    assert raw is not None and raw_meta is not None
    published = decode_trending(raw)
    depth = min(merger_k, other_k)
    assert published == everyone_top(now, depth)
    meta = orjson.loads(raw_meta)
    assert meta["complete"] is True
    assert meta.get("depth_limited_to") == (other_k if other_k < merger_k else None)


class TestPartialDepth:
    """How deep one partial lets the merge go exactly."""

    @hsettings(max_examples=200, deadline=None)
    @given(st.integers(1, 100), st.integers(0, 120))
    def test_truncated_bounds_full_does_not(self, depth: int, rows: int) -> None:
        """A partial holding its writer's whole top-K bounds the merge at K; fewer rows = all."""
        rows = min(rows, depth)
        doc = {"top": [[i, 1, 0, 0, 0] for i in range(rows)], "depth": depth}
        assert (partial_depth(doc) == depth) == (rows == depth)
        assert partial_depth(doc) >= depth

    def test_a_partial_of_an_older_writer_bounds_nothing(self) -> None:
        """No `depth` field (written before reloads existed): trusted as before."""
        assert partial_depth({"top": [[1, 1, 0, 0, 0]]}) > 10**9
