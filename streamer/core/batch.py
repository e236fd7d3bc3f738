"""The whole pure step of one fetched batch of one partition: raw values in, effects out.

The shell (streamer.stream.ingest) only sends what this returns, waits for the broker, and
acks; the order of those effects is written once, as numbered steps, in its docstring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from streamer.core.events import Columns, DeadLetter, decode_batch
from streamer.core.partition_state import Accepted, PartitionState
from streamer.core.partitioning import partitions_of, post_key


@dataclass(frozen=True, slots=True)
class Forward:
    """An event that arrived in another post's partition, to re-send keyed by its own post."""

    partition: int
    key: bytes
    value: bytes


@dataclass(slots=True)
class BatchResult:
    """Everything a fetched batch asks the shell to do, and what to count."""

    expired: list[bytes] = field(default_factory=list)  # record keys to tombstone
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    forwards: list[Forward] = field(default_factory=list)
    accepted: Accepted = field(default_factory=Accepted)
    own: Columns | None = None  # valid events of this partition's posts (the sink's rows)


def process_batch(
    state: PartitionState, values: Sequence[bytes | None], now_ms: int, partitions: int
) -> BatchResult:
    """Advance the window, decode, route, dedup and count one batch; build its records."""
    expired = state.advance(now_ms)
    cols, dead = decode_batch(values, now_ms)
    found = state.window.lookup(cols.post_ids)  # one index lookup, shared with counting
    # Posts held here are ours, no hash needed: they entered through this partition, and the
    # partition count never changes (docs/OPERATIONS.md). So `cols` ends as exactly the events
    # `sink_rows.rows_of` keeps, which the sink takes through the tap (`BatchResult.own`).
    mine = found >= 0
    forwards: list[Forward] = []
    if not mine.all():
        unknown = np.flatnonzero(~mine)
        parts = partitions_of(cols.post_ids[unknown], partitions)  # hashed once
        mine[unknown] = parts == state.partition
        elsewhere = parts != state.partition
        foreign, targets = unknown[elsewhere], parts[elsewhere].tolist()
        for i, target in zip(foreign.tolist(), targets, strict=True):
            post = int(cols.post_ids[i])
            forwards.append(Forward(target, post_key(post), cols.encode_one(i)))
        if len(foreign):
            keep = np.flatnonzero(mine)
            cols, found = cols.take(keep), found[keep]
    accepted = state.accept_columns(cols.event_ids, cols.post_ids, cols.types, cols.ts_ms,
                                    cols.user_ids, found)
    return BatchResult(expired, state.take_records(), dead, forwards, accepted, cols)
