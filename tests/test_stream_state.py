"""Partition state, its change records, the partitioner and the ClickHouse sink, without services."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.events import EVENT_TYPES, Event
from streamer.core.partition_state import PartitionState
from streamer.core.partitioning import partition_for_post, post_key
from streamer.core.records import parse_record_key, record_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, complete_window_at, window_at
from tests.state_helpers import Outcome, accept, take_record

T0 = 1_795_900_000_000 - 1_795_900_000_000 % MINUTE_MS  # a minute boundary


def ev(i: int, post: int, ts: int, kind: str = "view") -> Event:
    return Event(f"id-{i}", post, 1, kind, ts)


def brute(events: Sequence[Event], window: Window, k: int) -> list[PostCounts]:
    seen: set[str] = set()
    acc: dict[int, list[int]] = {}
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if window.contains(e.ts_ms):
            acc.setdefault(e.post_id, [0, 0, 0, 0])[e.type_index] += 1
    return rank_posts([PostCounts(p, *c) for p, c in acc.items()], k)


def random_stream(n: int, start: int, span_ms: int, seed: int) -> list[Event]:
    """n distinct events plus exact copies of a tenth of them (redeliveries), in ts order."""
    rng = random.Random(seed)
    out = [Event(f"id-{i}", rng.randint(0, 40), 7, rng.choice(EVENT_TYPES),
                 start + rng.randint(0, span_ms)) for i in range(n)]
    out += rng.sample(out, n // 10)
    return sorted(out, key=lambda e: e.ts_ms)


class TestPartitionState:
    """Counting, dedup and the records that rebuild the state."""

    def test_counts_each_event_id_once_and_flags_late(self) -> None:
        """A repeated id is a duplicate; an event before the window start is late."""
        state = PartitionState(0, 60, T0)
        assert accept(state, ev(1, 5, T0)) is Outcome.COUNTED
        assert accept(state, ev(1, 5, T0)) is Outcome.DUPLICATE
        assert accept(state, ev(2, 5, T0 - 61 * MINUTE_MS)) is Outcome.LATE
        assert accept(state, ev(3, 5, T0 + 2 * MINUTE_MS)) is Outcome.PENDING
        assert state.top(10) == [PostCounts(5, 1)]

    def test_records_rebuild_the_same_state(self) -> None:
        """State loaded from its records equals the live state, dedup ids included."""
        live = PartitionState(2, 60, T0)
        records = []
        stream = random_stream(3000, T0 - 30 * MINUTE_MS, 30 * MINUTE_MS, seed=1)
        for i in range(0, len(stream), 250):
            for e in stream[i : i + 250]:
                accept(live, e)
            rec = take_record(live)
            assert rec is not None
            records.append(rec)
        assert take_record(live) is None
        restored = PartitionState(2, 60, T0)
        assert restored.load(records) == []
        assert restored.top(50) == live.top(50) == brute(stream, window_at(T0, 60), 50)
        assert all(accept(restored, e) is Outcome.DUPLICATE for e in stream[:100]
                   if e.ts_ms >= T0 - 59 * MINUTE_MS)
        assert restored.records == live.records

    def test_replay_after_partial_loss_is_exact(self) -> None:
        """Only some records survive a crash: replaying every event gives the exact result."""
        live = PartitionState(0, 60, T0)
        stream = random_stream(2000, T0 - 10 * MINUTE_MS, 10 * MINUTE_MS, seed=2)
        records = []
        for i in range(0, len(stream), 400):
            for e in stream[i : i + 400]:
                accept(live, e)
            rec = take_record(live)
            assert rec is not None
            records.append(rec)
        survivor = PartitionState(0, 60, T0)
        survivor.load(records[:2])  # the rest never reached the broker
        for e in stream:  # redelivery from the committed offset (here: the start)
            accept(survivor, e)
        assert survivor.top(50) == brute(stream, window_at(T0, 60), 50)

    def test_advance_expires_minutes_and_records_exactly(self) -> None:
        """Minutes leave the window on the wall clock; records go once past the retained minutes."""
        state = PartitionState(0, 60, T0)
        accept(state, ev(1, 1, T0 - 59 * MINUTE_MS))
        old = take_record(state)
        accept(state, ev(2, 2, T0))
        take_record(state)
        assert old is not None
        assert state.advance(T0 + MINUTE_MS) == []  # still backs a retained minute
        assert state.top(10) == [PostCounts(2, 1)]
        assert state.advance(T0 + 4 * MINUTE_MS) == [old[0]]
        assert accept(state, ev(1, 1, T0 - 59 * MINUTE_MS)) is Outcome.LATE

    def test_complete_partial_matches_brute_force(self) -> None:
        """The complete-minute window is exact even after its first minute left the window."""
        stream = random_stream(4000, T0 - 62 * MINUTE_MS, 64 * MINUTE_MS, seed=3)
        state = PartitionState(0, 60, T0 - 62 * MINUTE_MS)
        for e in stream:
            state.advance(min(e.ts_ms, T0 + MINUTE_MS))
            accept(state, e)
        now = T0 + MINUTE_MS + 5_000
        state.advance(now)
        window = complete_window_at(now - MINUTE_MS, 60)  # one minute older: needs retained data
        assert state.can_compute(window)
        partial = state.complete_partial(window, 100)
        assert partial.posts == brute(stream, window, 100)
        assert partial.events == sum(
            sum((p.views, p.likes, p.comments, p.shares)) for p in brute(stream, window, 10**6))
        assert (partial.window, partial.partitions, partial.depth) == (window, [0], 100)
        assert partial.offsets == [state.next_offset] and partial.complete

    def test_complete_partial_right_after_recovery(self) -> None:
        """Records keep the minutes just behind the window, so a restarted owner can answer."""
        stream = random_stream(1500, T0 - 60 * MINUTE_MS, 3 * MINUTE_MS, seed=4)
        live = PartitionState(0, 60, T0)
        for e in stream:
            accept(live, e)
        record = take_record(live)
        assert record is not None
        now = T0 + MINUTE_MS + 5_000
        restored = PartitionState(0, 60, now)
        assert restored.load([record]) == []
        window = complete_window_at(now, 60)
        assert window.first_minute < (restored.window.first_minute or 0)
        assert restored.can_compute(window)
        assert restored.complete_partial(window, 100).posts == brute(stream, window, 100)

    @settings(max_examples=60, deadline=None)
    @given(seed=st.integers(0, 10**6), writers=st.integers(1, 3), data=st.data())
    def test_overlapping_records_count_each_event_once(
        self, seed: int, writers: int, data: st.DataObject
    ) -> None:
        """Records of several writers that cover overlapping parts of the same stream (a
        paused owner writing after it lost the partition, a record sent twice), loaded in any
        order: each event id counts once, live minutes and retained minutes alike."""
        stream = random_stream(600, T0 - 62 * MINUTE_MS, 64 * MINUTE_MS, seed=seed)
        records: list[tuple[bytes, bytes]] = []
        covered: list[Event] = []
        for _ in range(writers):
            lo = data.draw(st.integers(0, len(stream)))
            hi = data.draw(st.integers(lo, len(stream)))
            step = data.draw(st.integers(1, 200))
            writer = PartitionState(0, 60, T0 - 62 * MINUTE_MS)
            for i in range(lo, hi, step):
                for e in stream[i : i + step]:
                    accept(writer, e)
                    covered.append(e)
                rec = take_record(writer)
                if rec is not None:
                    records.append(rec)
        order = data.draw(st.permutations(records))
        now = T0 + MINUTE_MS + 5_000
        restored = PartitionState(0, 60, now)
        restored.load(order)
        assert restored.top(100) == brute(covered, window_at(now, 60), 100)
        window = complete_window_at(now, 60)  # starts in a retained minute
        assert restored.complete_partial(window, 100).posts == brute(covered, window, 100)

    def test_record_keys_carry_the_partition(self) -> None:
        """Keys name their partition and their writer."""
        assert parse_record_key(record_key(3, "ab12", 17)) == 3
        assert record_key(1, "w", 2) != record_key(1, "v", 2)


class TestPartitioner:
    """The post -> partition rule is Kafka's default partitioner on str(post_id)."""

    @pytest.mark.parametrize("partitions", [1, 4, 12])
    def test_matches_aiokafka_default_partitioner(self, partitions: int) -> None:
        """Same partition as aiokafka's producer picks for the key."""
        parts = list(range(partitions))
        for post_id in [0, 1, 7, 123, 2**40, 2**63 - 1, *range(1000, 1100)]:
            expected = DefaultPartitioner()(post_key(post_id), parts, parts)
            assert partition_for_post(post_id, partitions) == expected
