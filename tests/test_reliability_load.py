"""Scenario 9: sustained load at a fixed rate; event-to-cache latency and worker RSS recorded.

Main suite: 300 events/s for 45 s. Behind the `slow` marker (`pytest -m slow`): 1 500 events/s
for 5 minutes. Latency of an event = first time the test sees it counted in the published
trending array (polled every 100 ms) minus the moment it was sent; measured for events of posts
already visible in the top-50 when the event was sent (a post entering the top-50 later would
charge its older events the wait for ranking, not for the pipeline). Nothing here asserts time.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from streamer.core.events import EVENT_TYPES
from tests.reliability_helpers import (
    percentile,
    record_figures,
    rss_kib,
)
from tests.stream_helpers import (
    Cluster,
    WorkerProcess,
    event,
    now_ms,
    read_trending,
    settle_exact,
    wait_for_publish,
    wait_metric,
)


@dataclass
class LoadRun:
    """What the producer sent and what the observers saw."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    sent_at: dict[int, list[float]] = field(default_factory=dict)  # post -> send times, in order
    visible_since: dict[int, float] = field(default_factory=dict)  # post -> in the top-50 since
    counted: dict[int, int] = field(default_factory=dict)  # post -> events seen published
    latencies_ms: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    done: bool = False


async def produce_at_rate(run: LoadRun, bootstrap: str, topic: str, rate: int, seconds: int) -> float:
    """Send `rate` events/s in 100 ms ticks for `seconds`; returns the achieved rate."""
    rng = random.Random(91)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    await producer.start()
    started = time.monotonic()
    try:
        for tick in range(seconds * 10):
            await asyncio.sleep(max(0.0, started + tick / 10 - time.monotonic()))
            futures = []
            for _ in range(rate // 10):
                post = int(rng.paretovariate(1.1)) % 2000
                kind = rng.choices(EVENT_TYPES, weights=(80, 12, 5, 3))[0]
                e = event(f"load-{len(run.sent)}", post, now_ms(), kind, rng.randint(1, 5000))
                run.sent.append(e)
                run.sent_at.setdefault(post, []).append(time.monotonic())
                futures.append(await producer.send(topic, orjson.dumps(e), key=str(post).encode()))
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return len(run.sent) / (time.monotonic() - started)


async def observe_cache(run: LoadRun, redis: Redis) -> None:
    """Poll the published array; charge each newly visible event its send-to-seen time."""
    while not run.done:
        posts, _ = await read_trending(redis)
        seen = time.monotonic()
        shown = {p.post_id for p in posts or []}
        for gone in set(run.visible_since) - shown:
            del run.visible_since[gone]  # out of the top-50: its next events are not charged
        for p in posts or []:
            first = run.visible_since.setdefault(p.post_id, seen)
            total = p.views + p.likes + p.comments + p.shares
            times = run.sent_at.get(p.post_id, [])
            for k in range(run.counted.get(p.post_id, 0), min(total, len(times))):
                if times[k] >= first:
                    run.latencies_ms.append((seen - times[k]) * 1000)
            run.counted[p.post_id] = max(run.counted.get(p.post_id, 0), total)
        await asyncio.sleep(0.1)


async def sample_worker(run: LoadRun, w: WorkerProcess, every_s: float) -> None:
    """RSS and total consumer lag of the worker every `every_s`."""
    assert w.proc is not None
    started = time.monotonic()
    while not run.done:
        run.rss.append((round(time.monotonic() - started, 1), rss_kib(w.proc.pid)))
        _, body = await asyncio.to_thread(w.get, "/metrics")
        run.lag.append(sum(float(line.split()[-1]) for line in body.decode().splitlines()
                           if line.startswith("streamer_consumer_lag{")))
        await asyncio.sleep(every_s)


def rss_summary(rss: list[tuple[float, int]]) -> dict[str, Any]:
    """Start, after warm-up (first quarter), end and max RSS; growth after warm-up."""
    values = [kib for _, kib in rss]
    warm = values[len(values) // 4]
    end = values[-1]
    growth = (end - warm) / warm * 100
    return {"rss_start_mib": round(values[0] / 1024, 1), "rss_after_warmup_mib": round(warm / 1024, 1),
            "rss_end_mib": round(end / 1024, 1), "rss_max_mib": round(max(values) / 1024, 1),
            "rss_growth_after_warmup_pct": round(growth, 1), "rss_flat": abs(growth) < 10,
            "rss_samples": len(values)}


@pytest.mark.parametrize(("rate", "seconds"), [
    pytest.param(300, 45, id="300eps-45s", marks=pytest.mark.timeout(300)),
    pytest.param(1500, 300, id="1500eps-300s", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
])
async def test_sustained_load_is_exact_with_latency_and_rss(
    cluster: Cluster, redis_client: Redis, rate: int, seconds: int
) -> None:
    """A fixed rate for a fixed time: every event counted once, the publish exact afterwards;
    latency p50/p99 and RSS over time recorded."""
    w = cluster.worker("w1")
    w.wait_ready(90)
    run = LoadRun()
    observers = [asyncio.create_task(observe_cache(run, redis_client)),
                 asyncio.create_task(sample_worker(run, w, max(2.0, seconds / 30)))]
    try:
        achieved = await produce_at_rate(run, cluster.bootstrap, cluster.topic, rate, seconds)
        await wait_metric(w, "streamer_events_processed_total", len(run.sent), timeout_s=120)
        await wait_for_publish(redis_client, now_ms())  # one more for the last events' latency
    finally:
        run.done = True
        await asyncio.gather(*observers)
    posts, want, _ = await settle_exact(redis_client, run.sent, 4)
    assert posts == want
    assert w.metric("streamer_events_processed_total") == len(run.sent)
    assert w.metric("streamer_events_duplicate_total") == 0
    assert run.latencies_ms, "no event was observed in the published array"
    figures = {
        "target_rate_per_s": rate, "achieved_rate_per_s": round(achieved), "seconds": seconds,
        "events": len(run.sent), "events_lost": 0, "events_double_counted": 0,
        "latency_events_measured": len(run.latencies_ms),
        "latency_p50_ms": round(percentile(run.latencies_ms, 50)),
        "latency_p99_ms": round(percentile(run.latencies_ms, 99)),
        "latency_max_ms": round(max(run.latencies_ms)), "max_consumer_lag": max(run.lag),
        "publish_interval_s": 2, **rss_summary(run.rss),
        "rss_series_kib": run.rss,
    }
    record_figures(f"9_load_{rate}eps_{seconds}s", figures)
    assert w.terminate() == 0
