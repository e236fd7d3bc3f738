"""Synthetic inputs shared by scenarios: event tuples and ready-built partition states."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import numpy as np

from streamer.core.dedup import DedupIndex, event_keys
from streamer.core.events import EVENT_TYPE_INDEX
from streamer.core.scoring import PostCounts, merge_partials, rank_value
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow
from streamer.demo import generate

WINDOW_MINUTES = 60
TOPK = 50
# A fixed "now" on a minute boundary keeps every run identical.
NOW_MS = 1_795_913_760_000

EventTuple = tuple[str, int, int, int]  # event_id, post_id, type_index, ts_ms


def event_tuples(count: int, posts: int, seed: int = 11, span_ms: int = 50 * MINUTE_MS) -> list[EventTuple]:
    """`count` Zipf-popular events inside the window, as plain tuples (decode cost excluded)."""
    return [
        (e.event_id, e.post_id, EVENT_TYPE_INDEX[e.event_type], e.ts_ms)
        for e in generate.events(count, posts, max(1, posts // 4), NOW_MS, span_ms, seed)
    ]


def core_ingest(events: list[EventTuple]) -> tuple[PartitionWindow, DedupIndex]:
    """What a worker does per valid event: dedup by id, then count into the window."""
    state, _, _ = core_ingest_iter(events)
    return state  # type: ignore[return-value]  # core_ingest_iter's state is this pair


def naive_ingest(events: Iterable[EventTuple]) -> dict[int, list[int]]:
    """Baseline: a set of seen ids and a dict of four counters per post, no window, no index."""
    return _naive(events)[1]


def _naive(events: Iterable[EventTuple]) -> tuple[set[str], dict[int, list[int]]]:
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for event_id, post_id, type_index, _ts in events:
        if event_id in seen:
            continue
        seen.add(event_id)
        counters = counts.get(post_id)
        if counters is None:
            counters = counts[post_id] = [0, 0, 0, 0]
        counters[type_index] += 1
    return seen, counts


def build_partitions(
    posts: int, partitions: int, seed: int = 3, spread_minutes: int = 1
) -> list[PartitionWindow]:
    """`posts` active posts split by id over partitions, Zipf-like counts, one bucket each."""
    rng = random.Random(seed)
    parts = [PartitionWindow(WINDOW_MINUTES) for _ in range(partitions)]
    for part in parts:
        part.advance(NOW_MS)
    rows: list[list[tuple[int, int, int, int]]] = [[] for _ in parts]
    for post_id in range(1, posts + 1):
        count = max(1, int(10_000 / (1 + rng.random() * posts) ** 0.7))
        minute = rng.randrange(spread_minutes)
        rows[post_id % partitions].append((post_id, rng.randrange(4), NOW_MS // MINUTE_MS - minute, count))
    for part, part_rows in zip(parts, rows, strict=True):
        if part_rows:
            cols = np.array(part_rows, dtype=np.int64)
            n = cols[:, 3]
            part.add_batch(np.repeat(cols[:, 0], n), np.repeat(cols[:, 1], n).astype(np.uint8),
                           np.repeat(cols[:, 2], n))
    return parts


def stream_publish(parts: list[PartitionWindow], k: int = TOPK) -> list[PostCounts]:
    """The stream's publish: each partition's top-k from its index, merged exactly."""
    return merge_partials((p.top(k) for p in parts), k)


def full_sort_publish(parts: list[PartitionWindow], k: int = TOPK) -> list[PostCounts]:
    """Baseline: sort every post's totals and cut at k (what a non-indexed state would do)."""
    every = {c.post_id: c for p in parts for c in p.all_counts()}
    keyed = sorted((-rank_value(c.views, c.likes, c.comments, c.shares), pid)
                   for pid, c in every.items())
    return [every[pid] for _, pid in keyed[:k]]


def core_ingest_iter(events: Iterable[EventTuple]) -> tuple[object, int, int]:
    """core_ingest over an iterator; returns (state, active posts, events counted)."""
    window = PartitionWindow(WINDOW_MINUTES)
    window.advance(NOW_MS)
    dedup = DedupIndex()
    counted = 0
    it = iter(events)
    while chunk := list(itertools.islice(it, 5000)):  # the worker's unit of work: a batch
        ids, posts, types, ts = zip(*chunk, strict=True)
        minutes = np.array(ts, dtype=np.int64) // MINUTE_MS
        fresh = dedup.add_batch(*event_keys(list(ids)), minutes)
        window.add_batch(np.array(posts, dtype=np.int64)[fresh],
                         np.array(types, dtype=np.uint8)[fresh], minutes[fresh])
        counted += int(fresh.sum())
    return (window, dedup), len(window), counted


def naive_ingest_iter(events: Iterable[EventTuple]) -> tuple[object, int, int]:
    """naive_ingest over an iterator; returns (state, active posts, events counted)."""
    seen, counts = _naive(events)
    return (seen, counts), len(counts), len(seen)
