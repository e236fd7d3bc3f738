"""Reconcile cut-off: ClickHouse counts only rows the stream had read (by Kafka position)."""

from __future__ import annotations

import time

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.core.events import Event
from streamer.core.window import window_at

# From the clock, not a fixed instant: post_events has a TTL, and rows stamped a month
# before today are expired on insert (a fixed instant made these tests fail once it aged).
NOW_MS = time.time_ns() // 1_000_000


async def test_offsets_cut_rows_per_partition(clickhouse: ClickHouse) -> None:
    """Rows at or past a partition's next offset are left out; -1 and unknown rows count."""
    window = window_at(NOW_MS, 60)
    events = [Event(f"c-{i}", 7, 1, "view", NOW_MS - 1000) for i in range(6)]
    positions = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 5), (3, 9)]
    await queries.insert_events(clickhouse, events, positions)
    await queries.insert_events(clickhouse, [Event("no-position", 7, 1, "like", NOW_MS - 1000)])
    every = await queries.distinct_events(clickhouse, window)
    cut = await queries.distinct_events(clickhouse, window, [2, 1, 0, -1])
    counts = await queries.post_counts(clickhouse, window, [7], [2, 1, 0, -1])
    top = await queries.trending(clickhouse, window, 5, [2, 1, 0, -1])
    assert every == 7
    # kept: (0,0) (0,1) (1,0) (3,9: no cut-off for partition 3) and the row without a position
    assert cut == 5
    assert counts[0].views == 4 and counts[0].likes == 1
    assert top == counts


async def test_repeated_event_counts_once_if_any_copy_was_read(clickhouse: ClickHouse) -> None:
    """An event_id written twice (re-read by the sink) counts once when one copy is before the cut."""
    window = window_at(NOW_MS, 60)
    ev = Event("twice", 9, 1, "share", NOW_MS - 5000)
    await queries.insert_events(clickhouse, [ev, ev], [(2, 4), (2, 40)])
    assert await queries.distinct_events(clickhouse, window, [-1, -1, 10]) == 1
    assert await queries.distinct_events(clickhouse, window, [-1, -1, 4]) == 0
