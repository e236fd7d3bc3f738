"""The sink's columnar rows against a brute-force oracle: decode_message per message, own partition."""

from __future__ import annotations

import numpy as np
import orjson
from aiokafka.partitioner import murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.batch import process_batch
from streamer.core.events import EVENT_TYPES, Event, decode_message
from streamer.core.partition_state import PartitionState
from streamer.core.sink_rows import SinkRows, rows_of, rows_of_columns

NOW_MS = 1_795_913_777_000
PARTITIONS = 3


def owner(post_id: int) -> int:
    """aiokafka's default partitioner on the post key (the oracle's rule)."""
    return int(murmur2(str(post_id).encode()) & 0x7FFFFFFF) % PARTITIONS


def oracle(messages: list[tuple[int, int, bytes]]) -> list[tuple[Event, int, int]]:
    """Valid events of each message that belong to its partition, with the message's position."""
    return [(e, p, o) for p, o, v in messages for e in decode_message(v, NOW_MS).events
            if owner(e.post_id) == p]


member = st.one_of(
    st.builds(lambda i, post, user, kind, age: {"event_id": f"id-{i}", "post_id": post,
                                                "user_id": user, "event_type": kind,
                                                "ts": NOW_MS - age},
              st.integers(0, 10**6), st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1),
              st.sampled_from(EVENT_TYPES), st.integers(-10 * 60_000, 3_600_000)),
    st.just({"event_id": "bad"}),
)
message = st.one_of(member.map(orjson.dumps), st.lists(member, max_size=5).map(orjson.dumps),
                    st.just(b"not json"))
# Few posts and ids: posts the window holds, duplicates; ages from the future to late.
small = st.builds(lambda i, post, kind, age: {"event_id": f"d-{i}", "post_id": post,
                                              "user_id": i, "event_type": kind,
                                              "ts": NOW_MS - age},
                  st.integers(0, 30), st.integers(0, 12), st.sampled_from(EVENT_TYPES),
                  st.integers(-10 * 60_000, 3 * 3_600_000))
stream_message = st.one_of(small.map(orjson.dumps), st.lists(small, max_size=5).map(orjson.dumps),
                           member.map(orjson.dumps), st.just(b"[1, {}]"))


class TestRowsOf:
    """rows_of equals the per-message slow path, row for row, with positions."""

    @settings(max_examples=150, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, PARTITIONS - 1), message), max_size=12))
    def test_matches_oracle(self, drawn: list[tuple[int, bytes]]) -> None:
        """Same events, same order, same (partition, offset) as the brute-force recount."""
        messages = [(p, 100 + i, v) for i, (p, v) in enumerate(drawn)]
        rows = rows_of(np.array([p for p, _, _ in messages], dtype=np.int32),
                       np.array([o for _, o, _ in messages], dtype=np.int64),
                       [v for _, _, v in messages], PARTITIONS, NOW_MS)
        expected = oracle(messages)
        assert rows.events() == [e for e, _, _ in expected]
        assert rows.positions() == [(p, o) for _, p, o in expected]

    @settings(max_examples=150, deadline=None)
    @given(st.integers(0, PARTITIONS - 1),
           st.lists(st.tuples(st.lists(stream_message, min_size=1, max_size=6),
                              st.integers(0, 20 * 60_000)), min_size=1, max_size=6))
    def test_the_streams_own_columns_are_the_sinks_rows(
        self, partition: int, batches: list[tuple[list[bytes], int]]
    ) -> None:
        """What the tap hands over (process_batch's own columns with the batch's positions) is
        rows_of of the same messages at the same clock: future, late, duplicate, misrouted,
        invalid events and posts the window already holds included."""
        state = PartitionState(partition, 60, NOW_MS - 3_600_000)
        now, offset = NOW_MS - 3_600_000, 0
        for values, step_ms in batches:
            now += step_ms
            offsets = np.arange(offset, offset + len(values), dtype=np.int64) * 3 + 5
            offset += len(values)
            result = process_batch(state, values, now, PARTITIONS)
            assert result.own is not None
            got = rows_of_columns(result.own, partition, offsets)
            want = rows_of(np.full(len(values), partition, dtype=np.int32), offsets, values,
                           PARTITIONS, now)
            assert got.events() == want.events() and got.positions() == want.positions()
            assert got.partitions.dtype == want.partitions.dtype

    def test_chunks_and_concat_keep_every_row_once(self) -> None:
        """Chunks of at most n rows, concatenated back, are the rows."""
        docs = [{"event_id": f"c{i}", "post_id": i, "user_id": i, "event_type": "like",
                 "ts": NOW_MS - i} for i in range(50)]
        values = [orjson.dumps(docs[i:i + 7]) for i in range(0, 50, 7)]
        parts = np.array([owner(d["post_id"]) for d in docs[::7]], dtype=np.int32)  # type: ignore[arg-type]
        rows = rows_of(parts, np.arange(len(values), dtype=np.int64), values, PARTITIONS, NOW_MS)
        chunks = list(rows.chunks(4))
        assert all(len(c) <= 4 for c in chunks) and sum(map(len, chunks)) == len(rows)
        again = SinkRows.concat(chunks)
        assert again.events() == rows.events() and again.positions() == rows.positions()
        assert len(SinkRows.concat([])) == 0
