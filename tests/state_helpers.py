"""One event at a time on top of the batch API of the partition state and window: what the core
tests check step by step (the worker only ever adds columns and takes every record)."""

from __future__ import annotations

from enum import Enum

import numpy as np

from streamer.core.events import Event
from streamer.core.partition_state import PartitionState
from streamer.core.scoring import PostCounts
from streamer.core.window import MINUTE_MS
from streamer.core.window_state import PartitionWindow

Buckets = dict[int, list[int]]  # minute -> [views, likes, comments, shares]


class Outcome(Enum):
    """What happened to one valid event."""

    COUNTED = "counted"  # inside the current window
    PENDING = "pending"  # ahead of the window (valid future ts); counted once its minute opens
    LATE = "late"  # older than the window start: ignored
    DUPLICATE = "duplicate"  # its event id was counted already (accept only)


def accept(state: PartitionState, event: Event) -> Outcome:
    """Dedup and count one event through the worker's accept_columns."""
    got = state.accept_columns([event.event_id], np.array([event.post_id], dtype=np.int64),
                               np.array([event.type_index], dtype=np.uint8),
                               np.array([event.ts_ms], dtype=np.int64),
                               np.array([event.user_id], dtype=np.int64))
    if got.late:
        return Outcome.LATE
    if got.duplicate:
        return Outcome.DUPLICATE
    return Outcome.PENDING if got.pending else Outcome.COUNTED


def take_record(state: PartitionState) -> tuple[bytes, bytes] | None:
    """The one record of everything accepted since the last call, or None."""
    records = state.take_records()
    if len(records) > 1:
        raise RuntimeError("more than MAX_RECORD_EVENTS pending: use take_records")
    return records[0] if records else None


def add(window: PartitionWindow, post_id: int, type_index: int, ts_ms: int,
        count: int = 1) -> Outcome:
    """Count `count` events of one post at ts_ms through add_batch (no dedup here)."""
    first, last = window.bounds()
    minute = ts_ms // MINUTE_MS
    if minute < first:
        return Outcome.LATE
    if count <= 0:
        return Outcome.COUNTED if minute <= last else Outcome.PENDING
    window.add_batch(np.full(count, post_id, dtype=np.int64),
                     np.full(count, type_index, dtype=np.uint8),
                     np.full(count, minute, dtype=np.int64))
    return Outcome.PENDING if minute > last else Outcome.COUNTED


def load_post(window: PartitionWindow, post_id: int, buckets: Buckets) -> None:
    """Replace one post's buckets (minutes before the window start are ignored)."""
    first, _ = window.bounds()
    forget_post(window, post_id)
    for minute, counters in sorted(buckets.items()):
        if minute >= first:
            for type_index, n in enumerate(counters):
                if n:
                    add(window, post_id, type_index, minute * MINUTE_MS, n)


def forget_post(window: PartitionWindow, post_id: int) -> None:
    """Drop a post entirely: its events leave every held minute and its slot is freed."""
    slot = window.slot_of.get(post_id)
    if slot is None:
        return
    for block in window.held_minutes().values():
        slots, types = block.columns()
        keep = slots != slot
        block.chunks = [(slots[keep], types[keep])]
    window.held[slot] = 0
    window._release(np.array([slot]))  # the window's own slot release; no public path drops a post


def counts(window: PartitionWindow, post_id: int) -> PostCounts:
    """Window totals of one post."""
    slot = window.slot_of.get(post_id)
    if slot is None:
        return PostCounts(post_id)
    return PostCounts(post_id, *window.totals[slot].tolist())


def buckets(window: PartitionWindow, post_id: int) -> Buckets:
    """A copy of one post's held minute counters."""
    slot = window.slot_of.get(post_id)
    out: Buckets = {}
    if slot is None:
        return out
    for minute, block in sorted(window.held_minutes().items()):
        slots, types = block.columns()
        found = np.bincount(types[slots == slot], minlength=4).tolist()
        if any(found):
            out[minute] = found
    return out
