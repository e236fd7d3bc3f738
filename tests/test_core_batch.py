"""process_batch against a brute-force recount of the raw stream, crashes and replays included."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

import orjson
from aiokafka.partitioner import murmur2
from hypothesis import event, given, settings
from hypothesis import strategies as st

from streamer.core.batch import process_batch
from streamer.core.events import EVENT_TYPES, Event
from streamer.core.partition_state import RETAIN_MINUTES, PartitionState
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, complete_window_at, window_at
from tests.state_helpers import counts

T0 = 1_795_913_700_000 + 7_777
PARTITIONS = 3
MINE = 0
WINDOW_MINUTES = 3


def owner(post_id: int) -> int:
    """The partition aiokafka's default partitioner gives the post's key (the oracle's rule)."""
    return int(murmur2(str(post_id).encode()) & 0x7FFFFFFF) % PARTITIONS


def pool(seed: int, size: int) -> list[Event]:
    """Distinct events: short ids, canonical UUIDs and upper-case UUIDs (other ids), spread
    from before the start to past the end of the clock's range."""
    rng = random.Random(seed)
    out = []
    for i in range(size):
        u = str(uuid.UUID(int=rng.getrandbits(128)))
        event_id = [f"e{i}", u, u.upper()][i % 3]
        ts = T0 + rng.randint(-6 * MINUTE_MS, 14 * MINUTE_MS)
        out.append(Event(event_id, rng.randint(0, 12), 3, rng.choice(EVENT_TYPES), ts))
    return out


@dataclass
class Oracle:
    """Each event id counted once, at its first arrival that was not late."""

    counted: dict[str, Event] = field(default_factory=dict)
    dead: int = 0
    forwarded: list[bytes] = field(default_factory=list)

    def feed(self, events: list[Event], now_ms: int) -> None:
        first = window_at(now_ms, WINDOW_MINUTES).first_minute
        for e in events:
            if owner(e.post_id) != MINE:
                self.forwarded.append(orjson.dumps(e.to_dict()))
            elif e.event_id not in self.counted and e.ts_ms // MINUTE_MS >= first:
                self.counted[e.event_id] = e

    def top(self, window: Window, k: int) -> list[PostCounts]:
        acc: dict[int, list[int]] = {}
        for e in self.counted.values():
            if window.contains(e.ts_ms):
                acc.setdefault(e.post_id, [0, 0, 0, 0])[e.type_index] += 1
        return rank_posts([PostCounts(p, *c) for p, c in acc.items()], k)


_op = st.one_of(
    st.tuples(st.just("batch"), st.lists(st.tuples(st.lists(st.integers(0, 59), max_size=6),
                                                   st.booleans(), st.integers(0, 9)),
                                         min_size=1, max_size=5)),
    st.tuples(st.just("advance"), st.integers(0, 3), st.integers(0, MINUTE_MS - 1)),
    st.tuples(st.just("crash"), st.integers(0, 3), st.booleans()),
)


def _message(events: list[Event], as_array: bool, bad: int) -> tuple[bytes, int]:
    """A message value and how many dead letters it must give."""
    if bad == 0:
        return b"not json", 1
    docs = [e.to_dict() for e in events]
    if bad == 1 and docs:
        docs[0]["event_type"] = "click"
        return orjson.dumps(docs if as_array or len(docs) > 1 else docs[0]), 1
    if len(docs) == 1 and not as_array:
        return orjson.dumps(docs[0]), 0
    return orjson.dumps(docs), 0


def _valid(events: list[Event], bad: int, now_ms: int) -> list[Event]:
    kept = [] if bad == 0 else events[1:] if bad == 1 else events
    return [e for e in kept if e.ts_ms <= now_ms + 5 * MINUTE_MS]


@settings(max_examples=250, deadline=None)
@given(seed=st.integers(0, 10**6), program=st.lists(_op, max_size=30), data=st.data())
def test_batches_match_brute_force(seed: int, program: list[tuple[object, ...]],
                                   data: st.DataObject) -> None:
    """Duplicates, late, future, misrouted and bad input, batches of any size, crashes that
    lose the newest records and redeliver their batches, records loaded twice and in any
    order, the window moving: top-k, counters and complete partials stay exact."""
    events = pool(seed, 60)
    now = T0
    oracle = Oracle()
    state = PartitionState(MINE, WINDOW_MINUTES, now)
    durable: dict[bytes, bytes] = {}
    since_advance: list[tuple[list[bytes], list[bytes]]] = []  # (values, record keys)
    dead = 0
    for op in program:
        if op[0] == "advance":
            now += int(op[1]) * MINUTE_MS + int(op[2])  # type: ignore[call-overload]
            since_advance = []
            for key in state.advance(now):
                durable.pop(key, None)
        elif op[0] == "batch":
            values = []
            for picks, as_array, bad in op[1]:  # type: ignore[attr-defined]
                chosen = [events[i] for i in picks]
                value, n_dead = _message(chosen, as_array, bad)
                values.append(value)
                valid = _valid(chosen, bad, now)
                kept = [] if bad == 0 else chosen[1:] if bad == 1 else chosen
                oracle.dead += n_dead + len(kept) - len(valid)  # future ts: dead letters too
                oracle.feed(valid, now)
            result = process_batch(state, values, now, PARTITIONS)
            dead += len(result.dead)
            assert sorted(f.value for f in result.forwards) == sorted(oracle.forwarded)
            assert all(owner(orjson.loads(f.value)["post_id"]) == f.partition
                       for f in result.forwards)
            oracle.forwarded = []
            for key in result.expired:
                durable.pop(key, None)
            durable.update(result.records)
            since_advance.append((values, [k for k, _ in result.records]))
        else:
            lost = min(int(op[1]), len(since_advance))  # type: ignore[call-overload]
            for _, keys in since_advance[len(since_advance) - lost:]:
                for key in keys:
                    durable.pop(key, None)
            redeliver = since_advance[len(since_advance) - lost:]
            records = list(durable.items())
            if op[2]:
                records += records[: len(records) // 2]  # sent twice / a zombie's copies
            state = PartitionState(MINE, WINDOW_MINUTES, now)
            assert state.load(data.draw(st.permutations(records))) == []
            first = state.window.first_minute or 0
            event(f"retained minutes loaded: {any(m < first for m in state.window.held_minutes())}")
            since_advance = []
            for values, _ in redeliver:
                result = process_batch(state, values, now, PARTITIONS)
                durable.update(result.records)
                since_advance.append((values, [k for k, _ in result.records]))
            oracle.forwarded = []
        window = window_at(now, WINDOW_MINUTES)
        assert state.top(20) == oracle.top(window, 20)
        for post in range(13):
            want = [p for p in oracle.top(window, 100) if p.post_id == post]
            assert counts(state.window, post) == (want[0] if want else PostCounts(post))
        complete = complete_window_at(now, WINDOW_MINUTES)
        assert state.can_compute(complete)
        partial = state.complete_partial(complete, 20)
        assert partial.posts == oracle.top(complete, 20)
        assert partial.events == sum(
            p.views + p.likes + p.comments + p.shares for p in oracle.top(complete, 10**6))
    assert dead == oracle.dead
    assert RETAIN_MINUTES >= 1
