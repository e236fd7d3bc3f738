"""What the ClickHouse sink writes, as columns: valid events of their own partition with positions."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from streamer.core.events import EVENT_TYPES, Columns, Event, decode_batch
from streamer.core.partitioning import partitions_of

TYPE_NAMES = np.array(EVENT_TYPES, dtype=object)


@dataclass(frozen=True, slots=True)
class SinkRows:
    """post_events rows as parallel columns (no per-event Python object beyond the id string)."""

    event_ids: list[str]
    post_ids: npt.NDArray[np.int64]
    user_ids: npt.NDArray[np.int64]
    types: npt.NDArray[np.uint8]
    ts_ms: npt.NDArray[np.int64]
    partitions: npt.NDArray[np.int32]
    offsets: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.event_ids)

    @classmethod
    def empty(cls) -> SinkRows:
        """No rows."""
        i64 = np.empty(0, dtype=np.int64)
        return cls([], i64, i64, np.empty(0, dtype=np.uint8), i64, np.empty(0, dtype=np.int32), i64)

    @classmethod
    def concat(cls, parts: Sequence[SinkRows]) -> SinkRows:
        """The rows of several fetches, in order."""
        if len(parts) == 1:
            return parts[0]
        if not parts:
            return cls.empty()
        ids = [i for p in parts for i in p.event_ids]
        return cls(ids, *(np.concatenate([getattr(p, f) for p in parts]) for f in _ARRAYS))

    def chunks(self, size: int) -> Iterator[SinkRows]:
        """Consecutive slices of at most `size` rows (one insert each)."""
        for start in range(0, len(self), size):
            yield self.slice(start, start + size)

    def slice(self, start: int, end: int) -> SinkRows:
        """Rows start..end-1 (views of the columns, no copy)."""
        return SinkRows(self.event_ids[start:end], *(getattr(self, f)[start:end] for f in _ARRAYS))

    def positions(self) -> list[tuple[int, int]]:
        """(partition, offset) of every row."""
        return list(zip(self.partitions.tolist(), self.offsets.tolist(), strict=True))

    def events(self) -> list[Event]:
        """The rows as Event objects (tests and callers off the hot path)."""
        return list(map(Event, self.event_ids, self.post_ids.tolist(), self.user_ids.tolist(),
                        TYPE_NAMES[self.types].tolist(), self.ts_ms.tolist()))


_ARRAYS = ("post_ids", "user_ids", "types", "ts_ms", "partitions", "offsets")


def rows_of(
    partition_of: npt.NDArray[np.int32], offset_of: npt.NDArray[np.int64],
    values: Sequence[bytes | None], partitions: int, now_ms: int,
) -> SinkRows:
    """Valid events of messages (partition, offset, value) that belong to their message's partition.

    Misrouted members are left out: their forwarded copy is written from the right partition.
    """
    cols, _ = decode_batch(values, now_ms)
    where = partition_of[cols.message]
    offsets = offset_of[cols.message]
    own = partitions_of(cols.post_ids, partitions) == where
    if own.all():  # the usual case: every event in its post's partition, nothing to take
        return SinkRows(cols.event_ids, cols.post_ids, cols.user_ids, cols.types, cols.ts_ms,
                        where, offsets)
    kept = np.flatnonzero(own)
    ids = [cols.event_ids[i] for i in kept.tolist()]
    return SinkRows(ids, cols.post_ids[kept], cols.user_ids[kept], cols.types[kept],
                    cols.ts_ms[kept], where[kept], offsets[kept])


def rows_of_columns(
    cols: Columns, partition: int, message_offsets: npt.NDArray[np.int64]
) -> SinkRows:
    """The rows of one partition's decoded batch whose misrouted events are already left out
    (the stream's own columns: the sink takes them instead of decoding the messages again)."""
    return SinkRows(cols.event_ids, cols.post_ids, cols.user_ids, cols.types, cols.ts_ms,
                    np.full(len(cols), partition, dtype=np.int32), message_offsets[cols.message])
