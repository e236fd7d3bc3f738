"""Reconcile while counting people: real partition states against embedded ClickHouse agree
exactly; an account only one side saw is reported."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.events import Event
from streamer.core.partition_state import PartitionState
from streamer.core.people import Counting
from streamer.core.reconcile import StreamSnapshot
from streamer.core.window import MINUTE_MS, Window, complete_window_at
from streamer.jobs.reconcile import Reconciler
from streamer.settings.model import Settings
from tests.test_reconcile_job import make_events

K = 10
PARTITIONS = 4


def stream_snapshot(events: Sequence[Event], now: int, counting: Counting) -> StreamSnapshot:
    """Each partition's complete-minute partial from a real PartitionState, merged."""
    window = complete_window_at(now, 60)
    posts, total = [], 0
    for part in range(PARTITIONS):
        state = PartitionState(part, 60, now - MINUTE_MS, counting)  # its window = the complete one
        mine = [e for e in events if e.post_id % PARTITIONS == part]
        state.accept_columns([e.event_id for e in mine],
                             np.array([e.post_id for e in mine], dtype=np.int64),
                             np.array([e.type_index for e in mine], dtype=np.uint8),
                             np.array([e.ts_ms for e in mine], dtype=np.int64),
                             np.array([e.user_id for e in mine], dtype=np.int64))
        state.advance(now)
        partial = state.complete_partial(window, 2 * K)
        posts += partial.posts
        total += partial.events
    return StreamSnapshot(window, posts, total, list(range(PARTITIONS)), [], 2 * K)


@pytest.mark.parametrize(("people", "min_people"), [(True, 1), (True, 3), (False, 3)])
async def test_people_reconcile_is_exact_and_sees_one_sided_accounts(
    settings: Settings, clickhouse: ClickHouse, redis_client: Redis, people: bool,
    min_people: int,
) -> None:
    now = wall_ms()
    window: Window = complete_window_at(now, 60)
    events = make_events(window, 2000)
    events += [Event(f"burst{i}", 8, 77, "share", window.start_ms + i) for i in range(400)]
    await queries.insert_events(clickhouse, events)
    await queries.insert_events(clickhouse, events[:300])  # repeated rows count once
    s = settings.model_copy(update={"job_trending_topk": K, "job_trending_count":
                                    "people" if people else "events",
                                    "job_trending_min_people": min_people})
    counting = Counting(people, min_people)
    snapshot = stream_snapshot(events, now, counting)
    report = await Reconciler(s, clickhouse, redis_client, flush_wait_s=0.0).run(snapshot)
    assert report.topk_overlap == 1.0 and report.differences == []
    assert report.stream_events == report.clickhouse_events == 2400
    assert snapshot.posts
    best = max(snapshot.posts, key=lambda p: p.rank)
    newcomers = [Event(f"new{i}", best.post_id, 10_000 + i, "share", window.start_ms + i)
                 for i in range(3)]  # three accounts only ClickHouse has
    await queries.insert_events(clickhouse, newcomers)
    report = await Reconciler(s, clickhouse, redis_client, flush_wait_s=0.0).run(snapshot)
    diff = next(d for d in report.differences if d.post_id == best.post_id)
    assert diff.clickhouse.shares == best.shares + 3
