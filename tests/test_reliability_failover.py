"""Scenarios 1-2: workers killed with SIGKILL.

Scenario 1 (kill -9 one worker mid-stream, restart it on the same data dir, exact result) is
covered exactly by tests/test_stream_worker.py::TestCrash::test_kill9_mid_stream_then_restart_is_exact
(memory and rocksdb stores: published array == brute force over every event, and the restarted
worker recovered rather than replayed). Here: a worker killed for good and its partitions taken over.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.reliability_helpers import (
    await_until,
    record_figures,
)
from tests.stream_helpers import Cluster, keyed, now_ms, produce, random_events, read_trending, settle_exact

pytestmark = pytest.mark.timeout(240)
INTERVAL_S = 2  # FAST_GROUP_ENV's JOB_TRENDING_INTERVAL_SEC


async def watch_metas(redis: Redis, count: int, timeout_s: float) -> list[dict[str, Any]]:
    """The next `count` distinct metas published (AssertionError with those seen on timeout)."""
    metas: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(metas) < count:
        assert time.monotonic() < deadline, f"{len(metas)} of {count} publishes: {metas}"
        _, meta = await read_trending(redis)
        if meta and (not metas or metas[-1]["generated_at_ms"] != meta["generated_at_ms"]):
            metas.append(meta)
        await asyncio.sleep(0.1)
    return metas


class TestSurvivorTakesOver:
    """Two workers; one is killed for good."""

    async def test_survivor_recovers_partitions_and_publishes_exact(
        self, cluster: Cluster, redis_client: Redis
    ) -> None:
        """After kill -9 of one worker the other owns all partitions, rebuilt their state from
        the changelog and publishes the exact global top-50 within a bounded time; from then on
        every tick is published, complete, with no gap."""
        w1, w2 = cluster.worker("w1"), cluster.worker("w2")
        w1.wait_ready(90)
        w2.wait_ready(90)
        await await_until(lambda: w1.metric("streamer_partitions_owned") == 2
                          and w2.metric("streamer_partitions_owned") == 2, 60, "a 2/2 split")
        now = now_ms()
        before = random_events(8000, 600, now, seed=21)
        await produce(cluster.bootstrap, cluster.topic, keyed(before))
        posts, want, _ = await settle_exact(redis_client, before, 4)
        assert posts == want

        w2.kill()
        killed_at, killed_ms = time.monotonic(), now_ms()
        after = random_events(4000, 600, now_ms(), seed=22)
        await produce(cluster.bootstrap, cluster.topic, keyed(after))
        owned_s = await await_until(lambda: w1.metric("streamer_partitions_owned") == 4, 90,
                                    "the survivor owning all 4 partitions")
        posts, want, meta = await settle_exact(redis_client, before + after, 4, timeout_s=90,
                                              after_ms=killed_ms)
        exact_s = time.monotonic() - killed_at
        assert posts == want, "survivor's publish must equal the brute force over every event"
        assert meta["complete"] and meta["missing_partitions"] == []

        metas = await watch_metas(redis_client, 4, 120)  # a bound against hanging, not a rate
        ticks = [m["tick"] for m in metas]
        assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), ticks
        assert all(m["complete"] and m["partitions"] == [0, 1, 2, 3] for m in metas)
        gaps = [b["generated_at_ms"] - a["generated_at_ms"] for a, b in itertools.pairwise(metas)]
        assert w1.metric("streamer_events_processed_total") < 12000, "state recovered, not recounted"
        record_figures("2_failover", {
            "events": 12000, "takeover_partitions_s": round(owned_s, 1),
            "kill_to_exact_publish_s": round(exact_s, 1), "ticks_watched_after": len(ticks),
            "max_gap_between_publishes_ms": max(gaps), "events_lost": 0, "events_double_counted": 0,
        })
        assert w1.terminate() == 0
