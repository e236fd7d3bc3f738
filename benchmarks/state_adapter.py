"""The ONLY benchmark module that knows the worker's state API (records, their encoding, load, top-K).

Every benchmark that builds changelog records, rebuilds a partition from them, names the changelog
topic or builds a publish-ready state calls the functions below and nothing in
streamer/core/partition_state.py or streamer/core/window_state.py directly. When the state
representation changes, rewire these functions (same signatures) and every stream benchmark
follows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from streamer.core.partition_state import PartitionState
from streamer.core.scoring import PostCounts, merge_partials
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow
from streamer.stream.app import STATE_TABLE

WINDOW_MINUTES = 60
EventRow = tuple[str, int, int, int]  # event_id, post_id, type_index, ts_ms
Record = tuple[bytes, bytes]  # changelog key, value


def changelog_topic(app_id: str) -> str:
    """Kafka topic holding the worker's state records (Faust names it app-table-changelog)."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def build_records(rows: Iterable[EventRow], per_record: int, partition: int = 0) -> Iterator[Record]:
    """Encode accepted events into changelog records of `per_record` events, as the worker writes them."""
    chunk: list[EventRow] = []
    state: PartitionState | None = None
    for row in rows:
        chunk.append(row)
        if len(chunk) >= per_record:
            state = state or _writer(chunk, partition)
            yield from _encode(state, chunk)
            chunk = []
    if chunk:
        yield from _encode(state or _writer(chunk, partition), chunk)


def _writer(rows: Sequence[EventRow], partition: int) -> PartitionState:
    """A state whose window holds every row's minute (records are what it accepts)."""
    newest_ms = max(r[3] for r in rows)
    return PartitionState(partition, 10**6, newest_ms)  # a window wide enough for any bench rows


def _encode(state: PartitionState, rows: Sequence[EventRow]) -> list[Record]:
    """The record(s) the worker writes for these accepted rows."""
    ids = [r[0] for r in rows]
    posts = np.array([r[1] for r in rows], dtype=np.int64)
    types = np.array([r[2] for r in rows], dtype=np.uint8)
    ts = np.array([r[3] for r in rows], dtype=np.int64)
    state.accept_columns(ids, posts, types, ts)
    return state.take_records()


def new_state(now_ms: int, partition: int = 0) -> PartitionState:
    """An empty partition state whose window ends at now_ms."""
    return PartitionState(partition, WINDOW_MINUTES, now_ms)


def load_records(state: PartitionState, records: Sequence[Record]) -> None:
    """Rebuild a partition from its records (what recovery does after a restart)."""
    state.load(records)


def counted_events(state: PartitionState) -> int:
    """In-window events a state holds (sum of every post's counters): the rebuild's check."""
    return sum(p.views + p.likes + p.comments + p.shares for p in state.window.all_counts())


def active_posts(state: PartitionState) -> int:
    """Posts with at least one in-window event."""
    return sum(1 for _ in state.window.all_counts())


PublishState = list[PartitionWindow]


def publish_state(posts: int, partitions: int, now_ms: int, seed: int = 3) -> PublishState:
    """`posts` active posts split over partitions with Zipf-like counts, one bucket each."""
    rng = random.Random(seed)
    parts = [PartitionWindow(WINDOW_MINUTES) for _ in range(partitions)]
    for part in parts:
        part.advance(now_ms)
    rows: list[list[tuple[int, int, int]]] = [[] for _ in parts]
    for post_id in range(1, posts + 1):
        count = max(1, int(10_000 / (1 + rng.random() * posts) ** 0.7))
        rows[post_id % partitions].append((post_id, rng.randrange(4), count))
    minute = now_ms // MINUTE_MS
    for part, part_rows in zip(parts, rows, strict=True):
        if part_rows:
            cols = np.array(part_rows, dtype=np.int64)
            n = cols[:, 2]
            part.add_batch(np.repeat(cols[:, 0], n), np.repeat(cols[:, 1], n).astype(np.uint8),
                           np.full(int(n.sum()), minute, dtype=np.int64))
    for part in parts:
        part.top(1)  # settle any lazily built structure outside the timed publish
    return parts


def publish_top(parts: PublishState, k: int) -> list[PostCounts]:
    """The worker's publish: each partition's top-k, merged exactly into the global top-k."""
    return merge_partials((p.top(k) for p in parts), k)


def publish_full_sort(parts: PublishState, k: int) -> list[PostCounts]:
    """Baseline publish: every post's totals sorted, cut at k."""
    from streamer.core.scoring import rank_posts

    return rank_posts([c for p in parts for c in p.all_counts()], k)
