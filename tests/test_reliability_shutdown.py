"""Scenario 8: SIGTERM while a trending publish, a ClickHouse insert and a suggestions batch are
all in flight (held by `RedisProxy` and hung by `FakeClickHouse`; see those for why a fake)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from redis.asyncio import Redis

from streamer.core.scoring import PostCounts
from tests.reliability_helpers import (
    FakeClickHouse,
    RedisProxy,
    await_until,
    changelog_summary,
    record_figures,
    recovery_lines,
)
from tests.stream_helpers import (
    Cluster,
    NotSettled,
    WorkerProcess,
    keyed,
    now_ms,
    produce,
    random_events,
    settle_exact,
    wait_metric,
)

pytestmark = pytest.mark.timeout(240)
FOLLOWS = [(u, (u * 5 + k) % 50 + 1) for u in range(1, 50) for k in range(1, 4)]


def failures(w: WorkerProcess) -> tuple[float, float]:
    """(failed sink inserts, failed suggestions runs) so far."""
    return (w.metric("streamer_sink_failures_total"),
            w.metric("streamer_job_runs_total", 'job="suggestions",status="failure"'))


class RestartNotExact(Exception):
    """The worker started after a SIGTERM published a value different from the brute force."""


async def settle_after_restart(c: Cluster, w2: WorkerProcess, redis: Redis,
                               events: list[dict[str, Any]], after_ms: int, scenario: str) -> None:
    """The restarted worker's own publish equals the brute force, else the evidence is raised."""
    try:
        await settle_exact(redis, events, 4, timeout_s=45, after_ms=after_ms)
    except NotSettled as exc:
        posts, want, _ = exc.last or ([], [], {})
        await raise_not_exact(c, w2, posts, want, f"{scenario}: {exc}")


async def raise_not_exact(c: Cluster, w2: WorkerProcess, posts: list[PostCounts],
                          want: list[PostCounts], scenario: str) -> None:
    """Record and raise the evidence of an inexact restart: first difference, the restarted
    worker's counters and recovery log, and the changelog as the broker holds it."""
    diff = next((pair for pair in zip(posts, want, strict=False) if pair[0] != pair[1]),
                (len(posts), len(want)))
    detail = (f"first diff (published, expected) {diff}; w2 processed "
              f"{w2.metric('streamer_events_processed_total')}, duplicates "
              f"{w2.metric('streamer_events_duplicate_total')}; w2 {recovery_lines(w2)}; "
              f"changelog on the broker {await changelog_summary(c)}")
    record_figures(scenario, {"detail": detail})
    raise RestartNotExact(detail)



class TestSigtermInFlight:
    """A clean stop with everything in flight, then an exact restart."""

    async def test_sigterm_during_publish_insert_and_suggestions(
        self, cluster: Cluster, fake_ch: FakeClickHouse, proxy: RedisProxy, redis_client: Redis
    ) -> None:
        """SIGTERM lands while a publish EXEC is held, a sink INSERT and a suggestions batch query
        hang: the worker exits 0 within 60 s; the next start publishes the exact window."""
        w = cluster.worker("w1", REDIS_URL=proxy.url, CLICKHOUSE_URL=fake_ch.url,
                           JOB_CH_TIMEOUT_MS="10000", JOB_SUGGESTION_INTERVAL_SEC="2",
                           JOB_SUGGESTION_BATCH_SIZE="10")
        w.wait_ready(90)
        fake_ch.sql("INSERT INTO nova.follows (follower_id, followee_id, created_at) VALUES " + ",".join(
            f"({a},{b},now64(3))" for a, b in FOLLOWS))
        first = random_events(2000, 200, now_ms(), seed=81)
        await produce(cluster.bootstrap, cluster.topic, keyed(first))
        posts, want, _ = await settle_exact(redis_client, first, 4)
        assert posts == want

        fake_ch.fault("hang", match="INSERT|nova.follows")
        failed_before = failures(w)
        second = random_events(2000, 200, now_ms(), seed=82)
        await produce(cluster.bootstrap, cluster.topic, keyed(second))
        # The worker's ClickHouse calls share one client and run one at a time: one of the sink
        # INSERT and the suggestions batch query is on the wire (hung), the other queued behind it.
        await await_until(lambda: fake_ch.stats()["hanging"] >= 1 and
                          w.metric("streamer_sink_pending_events") >= 2000, 60,
                          "a hung ClickHouse call with the sink batch pending")
        proxy.hold_next_exec()
        await await_until(proxy.held.is_set, 30, "a trending publish held before EXEC")
        # the preconditions of the case, asserted: all three are in flight when SIGTERM lands
        still_in_flight = failures(w) == failed_before  # nothing has timed out yet
        hung_at_sigterm = fake_ch.stats()["hanging"]
        assert still_in_flight and hung_at_sigterm >= 1 and proxy.held.is_set(), (
            failures(w), failed_before, hung_at_sigterm)

        signalled = time.monotonic()
        code = w.terminate(timeout_s=60)
        exit_s = time.monotonic() - signalled
        assert code == 0, w.tail()
        in_flight = fake_ch.stats()["hanging"]

        fake_ch.fault("ok")
        restarted_ms = now_ms()
        w2 = cluster.worker("w1", CLICKHOUSE_URL=fake_ch.url)
        w2.wait_ready(90)
        third = random_events(1000, 200, now_ms(), seed=83)
        await produce(cluster.bootstrap, cluster.topic, keyed(third))
        await settle_after_restart(cluster, w2, redis_client, first + second + third, restarted_ms,
                                   "8_sigterm_in_flight_restart_not_exact")
        record_figures("8_sigterm_in_flight", {
            "exit_code": code, "exit_after_sigterm_s": round(exit_s, 1),
            "clickhouse_requests_hung_at_sigterm": hung_at_sigterm,
            "clickhouse_requests_still_hung_at_exit": in_flight, "publish_held_at_sigterm": True,
            "insert_and_suggestions_in_flight_at_sigterm": still_in_flight, "ch_timeout_ms": 10000,
            "restart_exact": True, "events": 5000, "events_lost": 0, "events_double_counted": 0,
        })
        assert w2.terminate() == 0


class TestSigtermMidStream:
    """A clean stop while the worker is busy consuming."""

    async def test_sigterm_mid_stream_then_restart_is_exact(
        self, cluster: Cluster, redis_client: Redis
    ) -> None:
        """SIGTERM while 20 000 events are being consumed: exit 0, and the restarted worker
        publishes the exact window (nothing lost, nothing counted twice)."""
        w = cluster.worker("w1")
        w.wait_ready(90)
        events = random_events(20_000, 500, now_ms(), seed=84)
        producing = asyncio.create_task(produce(cluster.bootstrap, cluster.topic, keyed(events)))
        await wait_metric(w, "streamer_events_processed_total", 3000)
        assert w.terminate() == 0
        await producing
        restarted_ms = now_ms()
        w2 = cluster.worker("w1")
        w2.wait_ready(90)
        await settle_after_restart(cluster, w2, redis_client, events, restarted_ms,
                                   "8_sigterm_mid_stream_restart_not_exact")
        record_figures("8_sigterm_mid_stream", {"events": 20_000, "restart_exact": True})
        assert w2.terminate() == 0
