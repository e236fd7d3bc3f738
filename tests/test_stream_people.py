"""Counting people with real workers: the published list equals a recount of distinct accounts,
through batches, misrouted events, duplicates, kill -9, a restart and a move to an empty worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.events import Event
from streamer.core.payloads import trending_key, trending_meta_key
from streamer.core.people import Counting
from streamer.core.scoring import PostCounts
from streamer.core.window import Window
from streamer.demo.services import LocalService
from tests.stream_helpers import (
    Cluster,
    Message,
    event,
    keyed,
    now_ms,
    produce,
    random_events,
    read_trending,
    wait_metric,
)
from tests.test_core_people import recount

pytestmark = pytest.mark.timeout(300)
PEOPLE = Counting(people=True, min_people=2)
PEOPLE_ENV = {"JOB_TRENDING_COUNT": "people", "JOB_TRENDING_MIN_PEOPLE": "2"}


@pytest.fixture
def cluster(kafka_service: LocalService, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A 4-partition cluster counting people; its workers always stopped."""
    c = Cluster(kafka_service, redis_url, tmp_path, 4, prefix="people", **PEOPLE_ENV)
    yield c
    c.kill_all()


def as_events(wire: list[dict[str, Any]]) -> list[Event]:
    return [Event(e["event_id"], e["post_id"], e["user_id"], e["event_type"], e["ts"])
            for e in wire]


async def settle_people(redis: Redis, wire: list[dict[str, Any]], after_ms: int,
                        timeout_s: float = 90.0
                        ) -> tuple[list[PostCounts], list[PostCounts], dict[str, Any]]:
    """Poll complete publishes generated after `after_ms` until one equals the people recount
    over its own window; AssertionError with the last one seen when none does in time."""
    events = as_events(wire)
    deadline = time.monotonic() + timeout_s
    posts: list[PostCounts] = []
    want: list[PostCounts] = []
    meta: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got, got_meta = await read_trending(redis)
        if got is not None and got_meta and got_meta["partitions"] == [0, 1, 2, 3] \
                and got_meta["generated_at_ms"] > after_ms:
            posts, meta = got, got_meta
            window = Window(meta["window_start_ms"], meta["window_end_ms"])
            want = recount(events, window, 50, PEOPLE)
            if posts == want:
                return posts, want, meta
        await asyncio.sleep(0.1)
    raise AssertionError(f"no complete publish after {after_ms} equal to the recount within "
                         f"{timeout_s} s; last seen {meta}: {posts[:5]}..., want {want[:5]}...")


def traffic(now: int) -> tuple[list[dict[str, Any]], list[Message]]:
    """Skewed traffic of 99 accounts, a one-account burst, repeats, late and future events,
    half of it as 100-event arrays keyed by anything (forwarded to their posts' partitions)."""
    wire = random_events(20000, 800, now, seed=23)
    wire += [event(f"burst-{i}", 5, now - i, "like", user_id=4242) for i in range(3000)]
    wire += [event(f"late-{i}", i, now - 3 * 3600_000, "share", i) for i in range(20)]
    wire += [event(f"soon-{i}", i, now + 2 * 60_000, "share", i) for i in range(20)]
    arrays: list[Message] = [(b"1", orjson.dumps(wire[i:i + 100]), None)
                             for i in range(0, 10000, 100)]
    messages = arrays + keyed(wire[10000:]) + keyed(wire[:500])  # the last part: redeliveries
    return wire, messages


async def test_people_list_exact_through_kill_restart_and_move(
    cluster: Cluster, redis_client: Redis
) -> None:
    w = cluster.worker("w1", STREAMER_TABLE_STORE="rocksdb")
    w.wait_ready(90)
    wire, messages = traffic(now_ms())
    producing = asyncio.create_task(produce(cluster.bootstrap, cluster.topic, messages))
    await wait_metric(w, "streamer_events_processed_total", 3000)
    w.kill()
    await producing
    w2 = cluster.worker("w1", STREAMER_TABLE_STORE="rocksdb")
    w2.wait_ready(120)
    posts, want, meta = await settle_people(redis_client, wire, now_ms())  # w2's, not w1's
    assert posts == want and len(posts) == 50
    assert (meta["mode"], meta["count"], meta["min_people"]) == ("stream", "people", 2)
    burst = next(p for p in posts if p.post_id == 5) if any(p.post_id == 5 for p in posts) else None
    assert burst is None or burst.likes < 100  # 3000 likes of one account count once
    assert w2.terminate() == 0
    await redis_client.delete(trending_key(1), trending_meta_key(1))
    w3 = cluster.worker("w3", STREAMER_TABLE_STORE="rocksdb")  # empty dir: the changelog only
    w3.wait_ready(120)
    posts, want, _ = await settle_people(redis_client, wire, now_ms())
    assert posts == want and len(posts) == 50, "the changelog records must carry every account"
    assert w3.metric("streamer_events_processed_total") == 0  # rebuilt, nothing re-counted
    assert cluster.stop_all() == [0]
