"""Scenario 3: Redis stopped for several publish intervals, then restarted on the same port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from streamer.core.payloads import trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.core.window import Window
from streamer.demo.services import LocalService, start_redis
from tests.reliability_helpers import (
    await_until,
    cluster_of,
    record_figures,
)
from tests.stream_helpers import (
    Cluster,
    keyed,
    now_ms,
    oracle,
    produce,
    random_events,
    read_trending,
    settle_exact,
)
from tests.waiting import value_when

pytestmark = pytest.mark.timeout(240)
INTERVAL_S = 2
OUTAGE_S = 5 * INTERVAL_S


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalService]:
    """A redis-server this test may stop and restart."""
    svc = start_redis(workdir=tmp_path / "redis")
    yield svc
    svc.stop()


@pytest.fixture
def cluster(kafka_service: LocalService, own_redis: LocalService, tmp_path: Path) -> Iterator[Cluster]:
    """Workers on the test's own Redis, killed at the end."""
    with cluster_of(kafka_service, f"redis://127.0.0.1:{own_redis.port}/0", tmp_path) as c:
        yield c


async def first_publish(redis: Redis, timeout_s: float) -> tuple[list[PostCounts], dict[str, Any]]:
    """The first trending value written to a fresh Redis."""
    posts, meta = await value_when(lambda: read_trending(redis),
                                   lambda got: got[0] is not None and got[1] is not None,
                                   timeout_s, "a publish after the restart", 0.05)
    return posts, meta


class TestRedisOutage:
    """The worker rides out a Redis outage."""

    async def test_worker_survives_redis_restart(
        self, cluster: Cluster, own_redis: LocalService, tmp_path: Path
    ) -> None:
        """Redis down for 5 publish intervals: the worker keeps its process, keeps consuming
        Kafka, answers /healthz, turns /readyz 503; once Redis is back it publishes the exact
        window with TTLs, and nothing stamped before the restart is published as fresh."""
        w = cluster.worker("w1")
        w.wait_ready(90)
        pid = w.proc.pid if w.proc else 0
        redis = Redis(port=own_redis.port)
        try:
            before = random_events(3000, 300, now_ms(), seed=31)
            await produce(cluster.bootstrap, cluster.topic, keyed(before))
            posts, want, _ = await settle_exact(redis, before, 4)
            assert posts == want
            await redis.aclose()

            own_redis.stop()
            down_at_ms = now_ms()
            during = random_events(3000, 300, now_ms(), seed=32)
            await produce(cluster.bootstrap, cluster.topic, keyed(during))
            processed = await await_until(
                lambda: w.metric("streamer_events_processed_total") >= 6000, OUTAGE_S,
                "consuming Kafka while Redis is down")
            statuses: set[int] = set()
            while now_ms() - down_at_ms < OUTAGE_S * 1000:
                statuses.add(w.get("/readyz")[0])
                assert w.get("/healthz")[0] == 200
                await asyncio.sleep(0.5)
            assert w.proc is not None and w.proc.poll() is None and w.proc.pid == pid
            assert statuses == {503}, statuses

            restarted = start_redis(port=own_redis.port, workdir=tmp_path / "redis2")
            up_at_ms = now_ms()
            redis = Redis(port=restarted.port)
            try:
                back_s = await await_until(lambda: w.get("/readyz")[0] == 200, 60, "ready again")
                first, first_meta = await first_publish(redis, 60)
                window = Window(first_meta["window_start_ms"], first_meta["window_end_ms"])
                assert first == oracle(before + during, window, 50), "the first value after the restart"
                posts, want, meta = await settle_exact(redis, before + during, 4, timeout_s=60)
                assert posts == want
                assert meta["generated_at_ms"] > up_at_ms - INTERVAL_S * 1000, \
                    "first value after the restart must be computed after it, not held over"
                ttl_ms = cluster_ttl_ms = INTERVAL_S * 1500
                for key in (trending_key(1), trending_meta_key(1)):
                    pttl = await redis.pttl(key)
                    assert 0 < pttl <= cluster_ttl_ms, (key, pttl)
                first_publish_s = (meta["generated_at_ms"] - up_at_ms) / 1000
                assert w.proc.pid == pid and w.proc.poll() is None, "no restart, no crash loop"
                assert "fatal" not in (w.log_path.read_text() if w.log_path else "")
                record_figures("3_redis_outage", {
                    "outage_s": round((up_at_ms - down_at_ms) / 1000, 1),
                    "events_during_outage": 3000, "consumed_during_outage_within_s": round(processed, 1),
                    "ready_again_after_s": round(back_s, 1), "exact_publish_after_restart_s": first_publish_s,
                    "trending_ttl_ms": ttl_ms, "worker_restarts": 0, "events_lost": 0,
                })
                assert w.terminate() == 0
            finally:
                await redis.aclose()
                restarted.stop()
        finally:
            await redis.aclose()
