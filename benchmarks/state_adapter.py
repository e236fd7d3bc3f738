"""The ONLY benchmark module that knows the worker's state API (records, their encoding, load, top-K).

Every benchmark that builds changelog records, rebuilds a partition from them, names the changelog
topic or builds a publish-ready state calls the functions below and nothing in streamer/stream/state.py
or streamer/core/window_state.py directly. When the state representation changes, rewire these
functions (same signatures) and every stream benchmark follows.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence

from streamer.core.events import EVENT_TYPES, Event
from streamer.core.scoring import PostCounts
from streamer.core.topk import merge_partials
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow
from streamer.stream.app import STATE_TABLE
from streamer.stream.state import PartitionState, RecordBuilder, record_key

WINDOW_MINUTES = 60
EventRow = tuple[str, int, int, int]  # event_id, post_id, type_index, ts_ms
Record = tuple[bytes, bytes]  # changelog key, value


def changelog_topic(app_id: str) -> str:
    """Kafka topic holding the worker's state records (Faust names it app-table-changelog)."""
    return f"{app_id}-{STATE_TABLE}-changelog"


def build_records(rows: Iterable[EventRow], per_record: int, partition: int = 0) -> Iterator[Record]:
    """Encode accepted events into changelog records of `per_record` events, as the worker writes them."""
    builder = RecordBuilder()
    seq = 0
    for event_id, post_id, type_index, ts_ms in rows:
        builder.add(Event(event_id, post_id, 0, EVENT_TYPES[type_index], ts_ms), ts_ms // MINUTE_MS)
        if builder.events >= per_record:
            yield record_key(partition, "bench", seq), builder.encode()[0]
            builder, seq = RecordBuilder(), seq + 1
    if builder.events:
        yield record_key(partition, "bench", seq), builder.encode()[0]


def new_state(now_ms: int, partition: int = 0) -> PartitionState:
    """An empty partition state whose window ends at now_ms."""
    return PartitionState(partition, WINDOW_MINUTES, now_ms)


def load_records(state: PartitionState, records: Sequence[Record]) -> None:
    """Rebuild a partition from its records (what recovery does after a restart)."""
    state.load(records)


def counted_events(state: PartitionState) -> int:
    """In-window events a state holds (sum of every post's counters): the rebuild's check."""
    return sum(sum(totals) for totals in state.window.totals.values())


def active_posts(state: PartitionState) -> int:
    """Posts with at least one in-window event."""
    return len(state.window.totals)


PublishState = list[PartitionWindow]


def publish_state(posts: int, partitions: int, now_ms: int, seed: int = 3) -> PublishState:
    """`posts` active posts split over partitions with Zipf-like counts, one bucket each."""
    rng = random.Random(seed)
    parts = [PartitionWindow(WINDOW_MINUTES) for _ in range(partitions)]
    for part in parts:
        part.advance(now_ms)
    for post_id in range(1, posts + 1):
        count = max(1, int(10_000 / (1 + rng.random() * posts) ** 0.7))
        parts[post_id % partitions].add(post_id, rng.randrange(4), now_ms, count)
    for part in parts:
        part.top(1)  # settle any lazily synced index outside the timed publish
    return parts


def publish_top(parts: PublishState, k: int) -> list[PostCounts]:
    """The worker's publish: each partition's top-k, merged exactly into the global top-k."""
    return merge_partials((p.top(k) for p in parts), k)


def publish_full_sort(parts: PublishState, k: int) -> list[PostCounts]:
    """Baseline publish: every post's totals sorted, cut at k."""
    from streamer.core.scoring import rank_posts

    return rank_posts([PostCounts(pid, *t) for p in parts for pid, t in p.totals.items()], k)
