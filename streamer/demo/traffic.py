"""Realistic engagement traffic for the demo, and an exact record of what reached the broker.

Posts have Zipf base popularity and a rise-and-fade curve in demo time; events are a mix of
views, likes, comments and shares, sent as single events or JSON-array batches keyed by
str(post_id). A small share is deliberately awkward: re-sent duplicates, late and out-of-order
timestamps, messages in the wrong partition, batches mixing posts, and malformed messages.
The record counts only acknowledged sends, so the trending list can be recomputed exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

from streamer.clock import wall_ms
from streamer.core.events import EVENT_TYPE_INDEX, Event
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, minute_of
from streamer.demo.generate import TYPE_WEIGHTS

TICK_S = 0.1


now_ms = wall_ms  # event time of fresh events


def partition_for(post_id: int, partitions: int) -> int:
    """Kafka's default partitioner (murmur2 of the key) for str(post_id)."""
    hashed: int = murmur2(str(post_id).encode())
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True)
class TrafficShape:
    """How much of each awkward case the traffic carries (shares of events or messages)."""

    duplicate_rate: float = 0.02  # events re-sent later with the same event_id
    out_of_order_rate: float = 0.03  # valid, 1-20 minutes old: still inside the window
    late_rate: float = 0.01  # valid, 65-180 minutes old: before the window start
    malformed_rate: float = 0.004  # messages that are broken in one of several ways
    misrouted_rate: float = 0.01  # messages sent to another partition than their key's
    mixed_batch_rate: float = 0.05  # batches that also carry an event of another post
    max_batch: int = 20


class PostLifecycles:
    """Zipf base popularity times a rise-and-fade curve: some posts peak, others take over."""

    def __init__(self, posts: int, duration_s: float, rng: random.Random) -> None:
        self.post_ids = list(range(1, posts + 1))
        rng.shuffle(self.post_ids)
        span = max(duration_s, 10.0)
        self.base = [1.0 / rank for rank in range(1, posts + 1)]
        self.born = [rng.uniform(-0.8 * span, 0.9 * span) for _ in range(posts)]
        self.rise = [rng.uniform(0.1, 0.35) * span for _ in range(posts)]

    def cum_weights(self, t_s: float) -> list[float]:
        """Cumulative sampling weights at demo time t_s (background floor + the curve)."""
        weights = []
        for base, born, rise in zip(self.base, self.born, self.rise, strict=True):
            x = (t_s - born) / rise
            curve = x * math.exp(1.0 - x) if x > 0 else 0.0
            weights.append(base * (0.03 + curve))
        return list(itertools.accumulate(weights))


COUNTER_NAMES = (
    "messages", "messages_single", "messages_batch", "messages_mixed_batch", "messages_misrouted",
    "messages_duplicate", "messages_malformed", "valid_events", "duplicates_sent",
    "dead_letters_expected", "late_events", "out_of_order_events", "failed_sends",
)


@dataclass
class MessagePlan:
    """One Kafka message to send and what it means for the record."""

    key: bytes
    value: bytes
    partition: int | None = None
    new_events: list[Event] = field(default_factory=list)
    resent: int = 0
    dead_letters: int = 0
    kind: str = "single"


@dataclass
class TrafficRecord:
    """Exactly what the broker acknowledged: per (post, minute) counts of unique valid events."""

    keep_events: bool = False
    buckets: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    users: dict[int, int] = field(default_factory=dict)
    people: dict[tuple[int, int], list[set[int]]] = field(default_factory=dict)  # accounts per type
    burst: dict[str, int] = field(default_factory=dict)  # post_id, user_id, events of the burst
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    started_ms: int = 0
    finished_ms: int = 0

    def add_message(self, plan: MessagePlan) -> None:
        """Count one acknowledged message."""
        c = self.counters
        c["messages"] += 1
        c[f"messages_{plan.kind}"] += 1
        c["duplicates_sent"] += plan.resent
        c["dead_letters_expected"] += plan.dead_letters
        for ev in plan.new_events:
            self._add_event(ev)

    def _add_event(self, ev: Event) -> None:
        self.counters["valid_events"] += 1
        counts = self.buckets.setdefault((ev.post_id, minute_of(ev.ts_ms)), [0, 0, 0, 0])
        counts[EVENT_TYPE_INDEX[ev.event_type]] += 1
        accounts = self.people.setdefault((ev.post_id, minute_of(ev.ts_ms)), [set(), set(), set(), set()])
        accounts[EVENT_TYPE_INDEX[ev.event_type]].add(ev.user_id)
        self.users[ev.user_id] = self.users.get(ev.user_id, 0) + 1
        if self.keep_events:
            self.events.append(ev)

    def top_users(self, n: int) -> list[int]:
        """The n most active users (those most likely to have suggestions)."""
        return sorted(self.users, key=lambda u: (-self.users[u], u))[:n]

    def count_failed(self, plan: MessagePlan) -> None:
        """A send the broker did not acknowledge (its events are not in the record)."""
        self.counters["failed_sends"] += 1

    def trending(self, window: Window, k: int) -> list[PostCounts]:
        """The exact top-k the contract asks for over `window`, from what was produced."""
        return recompute_trending(self.buckets.items(), window, k)

    @property
    def sent_events(self) -> int:
        """Every event sent: unique valid ones, re-sent duplicates and dead letters."""
        c = self.counters
        return c["valid_events"] + c["duplicates_sent"] + c["dead_letters_expected"]

    def to_json(self) -> dict[str, Any]:
        """Counters and (when kept) every unique valid event, for reports and tests."""
        return {
            "counters": dict(self.counters),
            "started_ms": self.started_ms,
            "finished_ms": self.finished_ms,
            "burst": dict(self.burst),
            "events": [[e.event_id, e.post_id, e.user_id, e.event_type, e.ts_ms] for e in self.events],
        }


def recompute_trending(
    buckets: Iterable[tuple[tuple[int, int], list[int]]], window: Window, k: int
) -> list[PostCounts]:
    """Sum (post, minute) buckets inside the window and rank them as the contract says."""
    totals: dict[int, list[int]] = {}
    first, last = window.first_minute, window.last_minute
    for (post_id, minute), counts in buckets:
        if first <= minute <= last:
            acc = totals.setdefault(post_id, [0, 0, 0, 0])
            for i in range(4):
                acc[i] += counts[i]
    return rank_posts([PostCounts(p, *c) for p, c in totals.items()], k)


class TrafficModel:
    """Draws events and turns them into messages, including the awkward cases."""

    def __init__(
        self, posts: int, users: int, duration_s: float, partitions: int, seed: int,
        shape: TrafficShape | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.shape = shape or TrafficShape()
        self.partitions = partitions
        self.lives = PostLifecycles(posts, duration_s, self.rng)
        self.user_cum = list(itertools.accumulate(1.0 / (r**0.8) for r in range(1, users + 1)))
        self.users = users
        self.kinds = [k for k, _ in TYPE_WEIGHTS]
        self.kind_cum = list(itertools.accumulate(w for _, w in TYPE_WEIGHTS))
        self.recent: deque[Event] = deque(maxlen=5000)
        self.seq = 0
        self._cum: list[float] = []
        self._cum_at = -1.0
        self.id_prefix = f"{self.rng.getrandbits(32):08x}"

    def _event_time(self, now: int) -> tuple[int, str]:
        r = self.rng.random()
        if r < self.shape.late_rate:
            return now - self.rng.randint(65 * MINUTE_MS, 180 * MINUTE_MS), "late"
        if r < self.shape.late_rate + self.shape.out_of_order_rate:
            return now - self.rng.randint(MINUTE_MS, 20 * MINUTE_MS), "out_of_order"
        return now - self.rng.randint(0, 1500), "fresh"

    def draw(self, n: int, t_s: float, now: int) -> tuple[list[Event], dict[str, int]]:
        """n fresh valid events at demo time t_s (post popularity as of that moment)."""
        if t_s - self._cum_at >= 1.0 or not self._cum:
            self._cum, self._cum_at = self.lives.cum_weights(t_s), t_s
        posts = self.rng.choices(self.lives.post_ids, cum_weights=self._cum, k=n)
        users = self.rng.choices(range(1, self.users + 1), cum_weights=self.user_cum, k=n)
        kinds = self.rng.choices(self.kinds, cum_weights=self.kind_cum, k=n)
        out, timing = [], {"late": 0, "out_of_order": 0, "fresh": 0}
        for post_id, user_id, kind in zip(posts, users, kinds, strict=True):
            ts, label = self._event_time(now)
            timing[label] += 1
            self.seq += 1
            out.append(Event(f"{self.id_prefix}-{self.seq:09d}", post_id, user_id, kind, ts))
        return out, timing

    def plan(self, events: list[Event], now: int) -> list[MessagePlan]:
        """Group events into messages (batches per post, singles) and mix in the awkward ones."""
        by_post: dict[int, list[Event]] = {}
        for ev in events:
            by_post.setdefault(ev.post_id, []).append(ev)
        plans: list[MessagePlan] = []
        for post_id, evs in by_post.items():
            plans.extend(self._post_messages(post_id, evs))
        for plan in plans:
            if plan.kind == "single" and self.rng.random() < self.shape.misrouted_rate:
                self._misroute(plan)
        plans.extend(self._duplicates(len(events)))
        plans.extend(self._malformed(len(events), now))
        self.rng.shuffle(plans)
        return plans

    def remember(self, events: list[Event]) -> None:
        """Acknowledged events become candidates for duplicates and mixed batches."""
        self.recent.extend(events)

    def _post_messages(self, post_id: int, evs: list[Event]) -> list[MessagePlan]:
        key = str(post_id).encode()
        if len(evs) == 1 or self.rng.random() < 0.3:
            return [MessagePlan(key, orjson.dumps(e.to_dict()), new_events=[e]) for e in evs]
        out = []
        for start in range(0, len(evs), self.shape.max_batch):
            chunk = evs[start : start + self.shape.max_batch]
            out.append(MessagePlan(key, _batch(chunk), new_events=chunk, kind="batch"))
        if self.recent and self.rng.random() < self.shape.mixed_batch_rate:
            out.append(self._mixed_batch(key, evs[0]))
        return out

    def _mixed_batch(self, key: bytes, own: Event) -> MessagePlan:
        """A batch keyed by one post that also carries another post's (new) event."""
        other = self.rng.choice(self.recent)
        self.seq += 1
        foreign = Event(f"{self.id_prefix}-{self.seq:09d}", other.post_id, own.user_id,
                        "like", own.ts_ms)
        self.seq += 1
        mine = Event(f"{self.id_prefix}-{self.seq:09d}", own.post_id, own.user_id, "view", own.ts_ms)
        return MessagePlan(key, _batch([mine, foreign]), new_events=[mine, foreign],
                           kind="mixed_batch")

    def _misroute(self, plan: MessagePlan) -> None:
        if self.partitions < 2:
            return
        right = partition_for(plan.new_events[0].post_id, self.partitions)
        plan.partition = (right + self.rng.randint(1, self.partitions - 1)) % self.partitions
        plan.kind = "misrouted"

    def _duplicates(self, n: int) -> list[MessagePlan]:
        count = _draw_count(self.rng, n * self.shape.duplicate_rate)
        if not self.recent:
            return []
        out = []
        for ev in self.rng.sample(list(self.recent), min(count, len(self.recent))):
            out.append(MessagePlan(str(ev.post_id).encode(), orjson.dumps(ev.to_dict()), resent=1,
                                   kind="duplicate"))
        return out

    def _malformed(self, n: int, now: int) -> list[MessagePlan]:
        return [self._broken(now) for _ in range(_draw_count(self.rng, n * self.shape.malformed_rate))]

    def _broken(self, now: int) -> MessagePlan:
        """One message that is bad in one of the ways producers get it wrong."""
        self.seq += 1
        good = Event(f"{self.id_prefix}-{self.seq:09d}", self.rng.choice(self.lives.post_ids),
                     self.rng.randint(1, self.users), "view", now)
        key, obj = str(good.post_id).encode(), good.to_dict()
        kind = self.rng.choice(("json", "string_id", "type", "missing", "future", "batch", "scalar"))
        if kind == "batch":  # a batch with one good and one bad member: only the bad one is dead
            self.seq += 1
            bad = {**obj, "event_id": f"{self.id_prefix}-{self.seq:09d}", "event_type": "bookmark"}
            value = orjson.dumps([obj, bad])
            return MessagePlan(key, value, new_events=[good], dead_letters=1, kind="malformed")
        broken: dict[str, Any] = dict(obj)
        if kind == "string_id":
            broken["post_id"] = str(good.post_id)
        elif kind == "type":
            broken["event_type"] = "bookmark"
        elif kind == "missing":
            del broken["ts"]
        elif kind == "future":
            broken["ts"] = now + 3_600_000
        value = {"json": b'{"event_id": "oops", "post_id": 1', "scalar": b"42"}.get(
            kind, orjson.dumps(broken))
        return MessagePlan(key, value, dead_letters=1, kind="malformed")


def _batch(events: list[Event]) -> bytes:
    return orjson.dumps([e.to_dict() for e in events])


def _draw_count(rng: random.Random, expected: float) -> int:
    """Integer with the given expectation (floor plus a Bernoulli remainder)."""
    whole = int(expected)
    return whole + (1 if rng.random() < expected - whole else 0)


@dataclass
class TrafficProgress:
    """What the producer has done so far (read by the live view)."""

    elapsed_s: float = 0.0
    duration_s: float = 0.0
    target_rate: float = 0.0


async def _send_all(
    producer: AIOKafkaProducer, topic: str, plans: list[MessagePlan], record: TrafficRecord,
    model: TrafficModel,
) -> None:
    """Send a tick's messages and record each one the broker acknowledged."""
    futures = [
        await producer.send(topic, p.value, key=p.key, partition=p.partition) for p in plans
    ]
    results = await asyncio.gather(*futures, return_exceptions=True)
    for plan, result in zip(plans, results, strict=True):
        if isinstance(result, BaseException):
            record.count_failed(plan)
        else:
            record.add_message(plan)
            model.remember(plan.new_events)


async def produce(
    bootstrap: str, topic: str, model: TrafficModel, record: TrafficRecord, rate: float,
    duration_s: float, stop: asyncio.Event, progress: TrafficProgress,
    on_tick: Callable[[], None] | None = None,
    finale: Callable[[int], list[MessagePlan]] | None = None,
) -> None:
    """Send traffic at `rate` events/s for `duration_s` seconds (or until stop is set), then
    the finale's messages (planned at that moment, from the record so far)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1,
                                request_timeout_ms=15000)
    await producer.start()
    progress.duration_s, progress.target_rate = duration_s, rate
    record.started_ms = now_ms()
    started, drawn = time.monotonic(), 0
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - started
            progress.elapsed_s = min(elapsed, duration_s)
            if elapsed >= duration_s:
                break
            due = int(rate * elapsed) - drawn
            if due > 0:
                await _tick(producer, topic, model, record, min(due, int(rate) + 1), elapsed)
                drawn += due
            if on_tick is not None:
                on_tick()
            await _sleep_or_stop(stop, TICK_S)
        if finale is not None and not stop.is_set():
            await _send_all(producer, topic, finale(now_ms()), record, model)
        await producer.flush()
    finally:
        record.finished_ms = now_ms()
        await producer.stop()


async def _tick(
    producer: AIOKafkaProducer, topic: str, model: TrafficModel, record: TrafficRecord, n: int,
    t_s: float,
) -> None:
    now = now_ms()
    events, timing = model.draw(n, t_s, now)
    record.counters["late_events"] += timing["late"]
    record.counters["out_of_order_events"] += timing["out_of_order"]
    await _send_all(producer, topic, model.plan(events, now), record, model)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)

