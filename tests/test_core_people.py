"""Counting people: the partition state against a brute-force recount of distinct accounts."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.events import EVENT_TYPES, Event
from streamer.core.partition_state import PartitionState
from streamer.core.people import Counting, eligible_top, pair_keys
from streamer.core.records import RecordColumns, decode_record, encode_record
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, complete_window_at, window_at
from tests.state_helpers import accept, counts

T0 = 1_795_900_000_000 - 1_795_900_000_000 % MINUTE_MS
WINDOW_MINUTES = 10  # short windows: slides, expiries and retained minutes in few steps


def recount(events: Sequence[Event], window: Window, k: int, counting: Counting) -> list[PostCounts]:
    """Brute force: each event id once (first seen); per post and type the distinct accounts
    (or events) in the window; posts with fewer than the minimum of accounts left out."""
    seen: set[str] = set()
    people: dict[tuple[int, int], set[int]] = {}
    events_of: dict[int, list[int]] = {}
    accounts: dict[int, set[int]] = {}
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        if window.contains(e.ts_ms):
            people.setdefault((e.post_id, e.type_index), set()).add(e.user_id)
            events_of.setdefault(e.post_id, [0, 0, 0, 0])[e.type_index] += 1
            accounts.setdefault(e.post_id, set()).add(e.user_id)
    posts = []
    for post, n in events_of.items():
        if len(accounts[post]) < counting.min_people:
            continue
        if counting.people:
            n = [len(people.get((post, t), ())) for t in range(4)]
        posts.append(PostCounts(post, *n))
    return rank_posts(posts, k)


event_st = st.builds(
    lambda i, post, user, kind, offset_s: Event(f"e{i}", post, user, kind, offset_s * 1000),
    st.integers(0, 400), st.integers(0, 6), st.integers(0, 5), st.sampled_from(EVENT_TYPES),
    st.integers(-14 * 60, 6 * 60))  # seconds around "now": late, in window, future
step_st = st.one_of(
    st.lists(event_st, min_size=1, max_size=12).map(lambda b: ("batch", b)),
    st.integers(0, 4 * 60).map(lambda s: ("advance", s * 1000)),
    st.integers(9 * 60, 25 * 60).map(lambda s: ("advance", s * 1000)),  # past a whole window
    st.just(("restart", 0)),
)


class Replayed:
    """A partition state with its live records (the changelog) kept beside it."""

    def __init__(self, now: int, counting: Counting) -> None:
        self.counting = counting
        self.state = PartitionState(0, WINDOW_MINUTES, now, counting)
        self.log: dict[bytes, bytes] = {}

    def accept(self, batch: list[Event]) -> None:
        self.state.accept_columns(
            [e.event_id for e in batch], np.array([e.post_id for e in batch], dtype=np.int64),
            np.array([e.type_index for e in batch], dtype=np.uint8),
            np.array([e.ts_ms for e in batch], dtype=np.int64),
            np.array([e.user_id for e in batch], dtype=np.int64))
        self.log.update(self.state.take_records())

    def advance(self, now: int) -> None:
        for key in self.state.advance(now):
            del self.log[key]

    def restart(self, now: int) -> None:
        self.state = PartitionState(0, WINDOW_MINUTES, now, self.counting)
        for key in self.state.load(list(self.log.items())):
            del self.log[key]


class TestPeopleProperty:
    """Duplicates, late, future and out-of-order events, slides and restarts: always exact."""

    @settings(max_examples=300, deadline=None)
    @given(steps=st.lists(step_st, min_size=1, max_size=25), people=st.booleans(),
           min_people=st.integers(1, 3))
    def test_matches_recount(self, steps: list[tuple[str, object]], people: bool,
                             min_people: int) -> None:
        counting = Counting(people, min_people)
        now = T0 + 17_000
        node = Replayed(now, counting)
        fed: list[Event] = []
        versions: dict[str, Event] = {}
        for kind, arg in steps:
            if kind == "batch":
                assert isinstance(arg, list)
                batch = [Event(e.event_id, e.post_id, e.user_id, e.event_type, now + e.ts_ms)
                         for e in arg]
                batch = [versions.setdefault(e.event_id, e) for e in batch]  # an id names one event
                start = window_at(now, WINDOW_MINUTES).start_ms
                fed += [e for e in batch if e.ts_ms >= start]  # late ones are never counted
                node.accept(batch)
            elif kind == "advance":
                assert isinstance(arg, int)
                now += arg
                node.advance(now)
            else:
                node.restart(now)
            window = window_at(now, WINDOW_MINUTES)
            assert node.state.top(100) == recount(fed, window, 100, counting)
            assert node.state.top(2) == recount(fed, window, 2, counting)
        done = complete_window_at(now, WINDOW_MINUTES)
        if node.state.can_compute(done):
            partial = node.state.complete_partial(done, 100)
            assert partial.posts == recount(fed, done, 100, counting)
            assert partial.events == sum(p.views + p.likes + p.comments + p.shares
                                         for p in recount(fed, done, 10**6, Counting()))


class TestPeopleCases:
    """The behaviours the contract names, one by one."""

    def test_one_account_counts_once_per_type(self) -> None:
        state = PartitionState(0, 60, T0, Counting(people=True))
        for i in range(50):
            accept(state, Event(f"b{i}", 1, 9, "like", T0 + i))
        accept(state, Event("v", 1, 9, "view", T0))
        accept(state, Event("o", 2, 3, "like", T0))
        accept(state, Event("p", 2, 4, "like", T0))
        assert state.top(5) == [PostCounts(2, likes=2), PostCounts(1, views=1, likes=1)]

    def test_a_later_event_moves_the_expiry(self) -> None:
        state = PartitionState(0, 60, T0, Counting(people=True))
        accept(state, Event("a", 1, 9, "like", T0))
        accept(state, Event("b", 1, 9, "like", T0 + 30 * MINUTE_MS))
        state.advance(T0 + 30 * MINUTE_MS)
        assert state.top(5) == [PostCounts(1, likes=1)]
        state.advance(T0 + 60 * MINUTE_MS)  # the first like left the window, the second holds
        assert state.top(5) == [PostCounts(1, likes=1)]
        state.advance(T0 + 90 * MINUTE_MS)  # both left: the counter drops
        assert state.top(5) == []

    def test_future_event_counts_when_its_minute_opens(self) -> None:
        state = PartitionState(0, 60, T0, Counting(people=True))
        accept(state, Event("f", 1, 9, "share", T0 + 3 * MINUTE_MS))
        assert state.top(5) == []
        state.advance(T0 + 3 * MINUTE_MS)
        assert state.top(5) == [PostCounts(1, shares=1)]

    def test_minimum_applies_in_events_mode(self) -> None:
        state = PartitionState(0, 60, T0, Counting(people=False, min_people=2))
        for i in range(30):
            accept(state, Event(f"b{i}", 1, 9, "view", T0))
        accept(state, Event("x", 2, 1, "view", T0))
        accept(state, Event("y", 2, 2, "view", T0))
        assert state.top(5) == [PostCounts(2, views=2)]

    def test_default_counting_keeps_no_accounts(self) -> None:
        state = PartitionState(0, 60, T0)
        accept(state, Event("a", 1, 9, "like", T0))
        assert state.people is None and state.top(5) == [PostCounts(1, likes=1)]


class TestRecords:
    """Version 3 records carry the accounts; older versions still decode."""

    def test_round_trip_with_accounts(self) -> None:
        rng = np.random.default_rng(5)
        n = 300
        cols = RecordColumns(rng.integers(0, 2**63, n, dtype=np.uint64),
                             rng.integers(0, 2**63, n, dtype=np.uint64),
                             rng.integers(0, 2**63 - 1, n, dtype=np.int64),
                             rng.integers(0, 4, n, dtype=np.uint8),
                             rng.integers(100, 200, n, dtype=np.int64),
                             np.concatenate([[2**63 - 1, 0], rng.integers(0, 50, n - 2)]))
        assert cols.users is not None
        got = decode_record(encode_record(cols))
        order = np.argsort(cols.post_ids, kind="stable")
        assert got.users is not None
        assert (got.users == cols.users[order]).all() and (got.post_ids == cols.post_ids[order]).all()
        assert (got.types == cols.types[order]).all() and (got.low == cols.low[order]).all()

    def test_version_2_records_have_unknown_accounts(self) -> None:
        one = np.ones(3, dtype=np.int64)
        cols = RecordColumns(one.astype(np.uint64), np.arange(3, dtype=np.uint64), one,
                             one.astype(np.uint8), one)
        value = encode_record(cols)
        assert value[:1] == b"\x02" and decode_record(value).users is None
        state = PartitionState(0, 60, MINUTE_MS, Counting(people=True))
        state.load([(b"0:w:000000000000", value)])
        assert counts(state.window, 1) == PostCounts(1, likes=3) and state.top(5) == []


def test_pair_keys_are_exact() -> None:
    rng = random.Random(1)
    slots = np.array([rng.randrange(2**31) for _ in range(1000)], dtype=np.int32)
    users = np.array([rng.randrange(2**63) for _ in range(1000)], dtype=np.int64)
    high, low = pair_keys(slots, users)
    back = (high ^ (low * np.uint64(0x9E3779B97F4A7C15))).astype(np.int64)
    assert (back == users).all() and (low.astype(np.int32) == slots).all()


def test_eligible_top_reads_deeper_until_enough() -> None:
    ranked = [PostCounts(p, views=100 - p) for p in range(40)]
    people = {p: (3 if p % 7 == 0 else 1) for p in range(40)}
    got = eligible_top(lambda d: ranked[:d], lambda ids: [people[i] for i in ids], 3, 2)
    assert [p.post_id for p in got] == [0, 7, 14]
