"""Workers that disagree on JOB_TRENDING_TOPK for a tick still publish an exact top-K (real Redis)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import Window
from streamer.settings.live import LiveSettings
from streamer.settings.model import Settings, load_settings
from streamer.stream.exchange import MergeExchange, MergeRequest
from streamer.trending.merger import Publisher
from tests.test_stream_publisher import owned_states, publisher


def everyone_top(now: int, k: int) -> list[PostCounts]:
    """Brute force: every post of every partition, ranked by the contract."""
    states = owned_states([0, 1, 2, 3], 4, now)
    return rank_posts([p for s in states.values() for p in s.top(10_000)], k)


async def answer_until_done(worker: Publisher) -> None:
    """The other worker's answer loop, until it answered one request."""
    while True:
        req = await worker.exchange.current()
        if req is not None and await worker.answer(req):
            return
        await asyncio.sleep(0.02)


@pytest.mark.parametrize(("merger_k", "other_k"), [(50, 3), (3, 50), (20, 7), (7, 7)])
async def test_merger_with_other_topk_publishes_an_exact_list(
    settings: Settings, redis_client: Redis, clickhouse: ClickHouse, merger_k: int, other_k: int
) -> None:
    """The merger's K decides: the other worker answers at the depth the request names."""
    now = wall_ms()
    merger = publisher(settings.model_copy(update={"job_trending_topk": merger_k}), redis_client,
                       owned_states([0, 1], 4, now), clickhouse)
    other = publisher(settings.model_copy(update={"job_trending_topk": other_k}), redis_client,
                      owned_states([2, 3], 4, now), clickhouse)
    assert await merger._hold_lock()
    answering = asyncio.create_task(answer_until_done(other))
    await merger.merge(now)
    await asyncio.wait_for(answering, 10)
    raw, raw_meta = await redis_client.mget([trending_key(1), trending_meta_key(1)])
    assert raw is not None and raw_meta is not None
    assert decode_trending(raw) == everyone_top(now, merger_k)
    assert orjson.loads(raw_meta)["complete"] is True


class TestRequestDepth:
    """The merge request carries the merger's depth to every worker."""

    @hsettings(max_examples=100, deadline=None)
    @given(st.integers(1, 10_000), st.integers(0, 2**40))
    def test_depth_and_window_survive_the_round_trip(self, k: int, now_ms: int) -> None:
        """What a worker parses is what the merger asked for."""
        req = MergeRequest("id-1", Window(now_ms, now_ms + 60_000), now_ms, k)
        assert MergeRequest.from_doc(orjson.loads(orjson.dumps(req.to_doc()))) == req


async def test_merge_requests_live_as_long_as_the_reloaded_interval(
    settings: Settings, redis_client: Redis
) -> None:
    """JOB_TRENDING_INTERVAL_SEC reloaded 2 -> 60 s: the next request lives 1.5 x 60 s."""
    env = {"REDIS_URL": settings.redis_url, "JOB_TRENDING_INTERVAL_SEC": "2",
           "STREAMER_APP_ID": "reload-ttl"}
    live = LiveSettings(load_settings(env), env)
    exchange = MergeExchange(redis_client, live, "me")
    await exchange.request(wall_ms(), 50)
    assert 0 < await redis_client.pttl(exchange.request_key) <= 3_000
    live.env["JOB_TRENDING_INTERVAL_SEC"] = "60"
    assert live.reload("test") == "applied"
    await exchange.request(wall_ms(), 50)
    assert 3_000 < await redis_client.pttl(exchange.request_key) <= 90_000
