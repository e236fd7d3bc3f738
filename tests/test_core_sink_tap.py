"""The sink tap against a brute-force model of a log, the stream, the sink's consumer and crashes.

Whatever the order of offers, rebalances, fetches, seeks, inserts and crashes: every event of
every offset is inserted at least once, each inserted row is the log's row at its position, and
a committed offset never passes a row that was not inserted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.sink_rows import SinkRows
from streamer.core.sink_tap import SinkTap

PARTITIONS = 2
Row = tuple[int, int, str]  # partition, offset, event id


def message_rows(partition: int, offset: int, events: int) -> list[Row]:
    """The valid events of one message (0..3: invalid or misrouted members leave none)."""
    return [(partition, offset, f"{partition}-{offset}-{j}") for j in range(events)]


def as_rows(rows: list[Row]) -> SinkRows:
    """Model rows as the sink's columns (ids carry the position; other columns are filler)."""
    n = len(rows)
    i64 = np.zeros(n, dtype=np.int64)
    return SinkRows([r[2] for r in rows], i64, i64, np.zeros(n, dtype=np.uint8), i64,
                    np.array([r[0] for r in rows], dtype=np.int32),
                    np.array([r[1] for r in rows], dtype=np.int64))


@dataclass
class Model:
    """A log per partition, the stream's read position, the sink's consumer and its group."""

    log: list[list[int]]  # events per message, per partition
    tap: SinkTap = field(default_factory=lambda: SinkTap(6, 1 << 20, 100))
    stream_at: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    position: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    paused: set[int] = field(default_factory=set)
    committed: list[int] = field(default_factory=lambda: [0] * PARTITIONS)
    batch: list[Row] = field(default_factory=list)
    batch_ends: dict[int, int] = field(default_factory=dict)
    inserted: list[Row] = field(default_factory=list)
    now_ms: int = 0

    def rows(self, partition: int, first: int, last: int) -> list[Row]:
        return [r for o in range(first, last + 1)
                for r in message_rows(partition, o, self.log[partition][o])]

    def stream_reads(self, partition: int, count: int) -> None:
        first = self.stream_at[partition]
        last = min(first + count, len(self.log[partition])) - 1
        if last < first:
            return
        self.stream_at[partition] = last + 1
        rows = self.rows(partition, first, last)
        self.tap.offer(partition, first, last, lambda: (as_rows(rows), 10 * (last - first + 1)),
                       self.now_ms)

    def stream_moves(self, partition: int, offset: int) -> None:
        """A rebalance: the stream loses the partition and later reads it from elsewhere."""
        self.tap.release({partition})
        self.stream_at[partition] = min(offset, len(self.log[partition]))

    def sink_fetches(self, partition: int, count: int) -> None:
        if partition in self.paused:
            return
        first = self.position[partition]
        last = min(first + count, len(self.log[partition])) - 1
        if last < first:
            return
        self.position[partition] = last + 1
        start = self.tap.fetched(partition, first, last)
        if start is not None:
            self.batch.extend(self.rows(partition, start, last))
            self.batch_ends[partition] = last + 1

    def sink_syncs(self) -> None:
        """The sink's consumer pauses and seeks; the taken rows join the batch."""
        sync = self.tap.sync(self.now_ms)
        self.paused |= sync.pause
        for partition, offset in sync.seek.items():
            self.position[partition] = offset
            self.paused.discard(partition)
        for piece in sync.taken.pieces:
            rows = piece.rows
            self.batch.extend(zip(rows.partitions.tolist(), rows.offsets.tolist(),
                                  rows.event_ids, strict=True))
            self.batch_ends[piece.partition] = piece.end

    def sink_writes(self) -> None:
        self.sink_syncs()
        self.inserted.extend(self.batch)
        for partition, end in self.batch_ends.items():
            self.committed[partition] = end
            assert set(self.rows(partition, 0, end - 1)) <= set(self.inserted)
        self.batch, self.batch_ends = [], {}

    def sink_restarts(self, partition: int | None) -> None:
        """A crash (partition None: a new process, a new tap) or the sink group's rebalance."""
        moved = set(range(PARTITIONS)) if partition is None else {partition}
        if partition is None:
            self.tap = SinkTap(self.tap.max_events, self.tap.max_bytes, self.tap.idle_ms)
            self.batch, self.batch_ends = [], {}
        self.tap.forget(moved)
        for p in moved:
            self.position[p] = self.committed[p]
            self.paused.discard(p)

    def finish(self) -> None:
        """The stream stops; the sink fetches to the end and writes."""
        self.tap.close()
        self.sink_syncs()
        for p in range(PARTITIONS):
            self.sink_fetches(p, len(self.log[p]))
        self.sink_writes()


STEPS = st.one_of(
    st.tuples(st.just("read"), st.integers(0, PARTITIONS - 1), st.integers(1, 4)),
    st.tuples(st.just("move"), st.integers(0, PARTITIONS - 1), st.integers(0, 20)),
    st.tuples(st.just("fetch"), st.integers(0, PARTITIONS - 1), st.integers(1, 5)),
    st.tuples(st.just("sync"), st.just(0), st.just(0)),
    st.tuples(st.just("write"), st.just(0), st.just(0)),
    st.tuples(st.just("restart"), st.integers(-1, PARTITIONS - 1), st.just(0)),
    st.tuples(st.just("tick"), st.integers(1, 150), st.just(0)),
)


def run(model: Model, steps: list[tuple[str, int, int]]) -> None:
    """Apply the program to the model."""
    for kind, a, b in steps:
        if kind == "read":
            model.stream_reads(a, b)
        elif kind == "move":
            model.stream_moves(a, b)
        elif kind == "fetch":
            model.sink_fetches(a, b)
        elif kind == "sync":
            model.sink_syncs()
        elif kind == "write":
            model.sink_writes()
        elif kind == "restart":
            model.sink_restarts(None if a < 0 else a)
        else:
            model.now_ms += a


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=20),
                min_size=PARTITIONS, max_size=PARTITIONS),
       st.lists(STEPS, max_size=60))
def test_every_event_inserted_and_commits_never_pass_a_missing_row(
    log: list[list[int]], steps: list[tuple[str, int, int]]
) -> None:
    """Rows of the tap and of the fetches together: every event at least once, nothing else."""
    model = Model(log)
    run(model, steps)
    model.finish()
    every = {r for p in range(PARTITIONS) for r in model.rows(p, 0, len(log[p]) - 1)}
    assert set(model.inserted) == every
    assert model.committed == [len(ms) for ms in log]


def test_a_followed_partition_is_taken_from_the_stream_not_fetched() -> None:
    """Level with the stream, the sink takes every offer and pauses the partition."""
    model = Model([[1] * 12, []])
    model.sink_fetches(0, 2)  # the sink learns its position
    model.stream_reads(0, 2)  # what the sink fetched already: nothing to take, level
    assert model.tap.following.keys() == {0} and model.tap.taken.events == 0
    for _ in range(5):
        model.stream_reads(0, 2)
        model.sink_syncs()
        model.sink_fetches(0, 3)  # paused: nothing comes
    model.sink_writes()
    assert model.paused == {0} and model.tap.taken_events == 10
    assert [r[1] for r in model.inserted] == list(range(12))


def test_a_full_tap_gives_the_partition_back() -> None:
    """ClickHouse slow: offers beyond one batch are refused and the sink fetches them itself."""
    model = Model([[3] * 10, []])
    model.sink_fetches(0, 1)
    model.stream_reads(0, 1)  # level: followed
    model.stream_reads(0, 2)  # taken
    model.sink_syncs()  # ... then the sink inserts for a long time
    model.stream_reads(0, 2)  # 6 events: the tap is full
    model.stream_reads(0, 2)
    assert model.tap.resync == {0} and model.paused == {0}
    model.sink_syncs()
    assert 0 not in model.paused and model.position[0] == 5
    model.finish()
    assert [r[1] for r in model.inserted] == [o for o in range(10) for _ in range(3)]


def test_an_idle_followed_partition_is_given_back() -> None:
    """No offer for idle_ms (the stream stalled): the sink fetches the partition again."""
    model = Model([[1] * 4, []])
    model.sink_fetches(0, 1)
    model.stream_reads(0, 2)  # covers the sink's next offset 1: offset 1 is taken
    model.sink_syncs()
    assert model.paused == {0}
    model.now_ms += 100
    model.sink_syncs()
    assert model.paused == set() and model.position[0] == 2
    model.finish()
    assert [r[1] for r in model.inserted] == [0, 1, 2, 3]


def test_records_fetched_before_the_seek_are_dropped() -> None:
    """The consumer returned records of a partition the tap took (not yet paused), then the
    tap gave it back: records fetched before the seek are dropped, the seek re-reads them."""
    model = Model([[1] * 10, []])
    model.sink_fetches(0, 1)
    model.stream_reads(0, 1)
    model.stream_reads(0, 2)  # offsets 1-2 taken; the consumer is not paused yet
    model.sink_fetches(0, 4)  # 1-4 come back: dropped, its position is now 5
    model.stream_moves(0, 0)  # the stream loses the partition
    model.sink_fetches(0, 2)  # 5-6 come back before the seek: dropped too
    model.finish()
    assert sorted({r[1] for r in model.inserted}) == list(range(10))
