"""The two stream workloads (WIDE long tail, SKEWED Zipf), their message layouts and their producer."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Literal

import orjson
from aiokafka import AIOKafkaProducer

from streamer.core.events import EVENT_TYPES, Event
from streamer.core.partitioning import partition_for_post
from streamer.core.window import MINUTE_MS
from streamer.demo import generate

PARTITIONS = 4
ARRAY_SIZE = 100
TYPE_WEIGHTS = [w for _, w in generate.TYPE_WEIGHTS]  # view 80, like 12, comment 5, share 3
Form = Literal["single", "array"]
Message = tuple[int, bytes, bytes]  # partition, key, value


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes of one matrix run (full or --quick)."""

    wide_posts: int
    hot_posts: int
    hot_events_each: int
    skewed_events: int
    skewed_posts: int


FULL = Sizes(
    wide_posts=100_000, hot_posts=100, hot_events_each=100, skewed_events=150_000, skewed_posts=10_000
)
QUICK = Sizes(wide_posts=3_000, hot_posts=10, hot_events_each=20, skewed_events=4_000, skewed_posts=500)
WIDE_SPAN_MS = 40 * MINUTE_MS
SKEWED_SPAN_MS = 10 * MINUTE_MS


@dataclass(slots=True)
class Workload:
    """The events of one workload (kept for the exact recount) and where they were produced."""

    name: str
    events: list[Event]
    topics: dict[Form, str] = field(default_factory=dict)
    messages: dict[Form, int] = field(default_factory=dict)

    @property
    def posts(self) -> int:
        """Distinct posts."""
        return len({e.post_id for e in self.events})


def uuid4_text(rng: random.Random) -> str:
    """A random RFC 4122 version-4 UUID in its 36-character form (what producers send)."""
    h = f"{(rng.getrandbits(128) & ~(0xF000 << 64) | (0x4000 << 64)) & ~(0xC << 60) | (0x8 << 60):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def events_for_posts(post_ids: list[int], each: int, now_ms: int, seed: int) -> list[Event]:
    """`each` events per post, shuffled: UUID4 ids, random users, ts uniform over the wide span."""
    rng = random.Random(seed)
    events = [
        Event(
            uuid4_text(rng),
            pid,
            rng.randrange(1, 10**9),
            rng.choices(EVENT_TYPES, TYPE_WEIGHTS)[0],
            now_ms - rng.randrange(WIDE_SPAN_MS),
        )
        for pid in post_ids
        for _ in range(each)
    ]
    rng.shuffle(events)
    return events


def wide_events(sizes: Sizes, now_ms: int, seed: int = 12) -> list[Event]:
    """Long tail: every post 1 event (70%) or 2 (30%), plus a hot head; UUID4 ids, ts over 40 min."""
    rng = random.Random(seed)
    posts = rng.sample(range(1, 10**12), sizes.wide_posts)
    twice = [pid for pid in posts if rng.random() >= 0.7]
    events = events_for_posts(posts, 1, now_ms, seed + 1) + events_for_posts(twice, 1, now_ms, seed + 2)
    events += events_for_posts(posts[: sizes.hot_posts], sizes.hot_events_each, now_ms, seed + 3)
    rng.shuffle(events)
    return events


def skewed_events(sizes: Sizes, now_ms: int, seed: int = 11) -> list[Event]:
    """Zipf(1.1) over posts and Zipf(0.8) over users inside 10 minutes, short ids `ev-<seed>-<n>`."""
    users = max(1, sizes.skewed_posts // 2)
    return list(generate.events(sizes.skewed_events, sizes.skewed_posts, users, now_ms, SKEWED_SPAN_MS, seed))


def messages(events: list[Event], form: Form) -> list[Message]:
    """Single-event messages keyed by post, or 100-event arrays of one partition keyed by their first post.

    Arrays group events by the partition of their post, so no member is misrouted.
    """
    if form == "single":
        return [
            (partition_for_post(e.post_id, PARTITIONS), str(e.post_id).encode(), orjson.dumps(e.to_dict()))
            for e in events
        ]
    by_part: dict[int, list[Event]] = {}
    for e in events:
        by_part.setdefault(partition_for_post(e.post_id, PARTITIONS), []).append(e)
    out: list[Message] = []
    for part, evs in sorted(by_part.items()):
        for start in range(0, len(evs), ARRAY_SIZE):
            chunk = evs[start : start + ARRAY_SIZE]
            out.append((part, str(chunk[0].post_id).encode(), orjson.dumps([e.to_dict() for e in chunk])))
    return out


async def produce(bootstrap: str, topic: str, msgs: list[Message]) -> None:
    """Send every message to its partition and wait until the broker has all of them."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, max_request_size=8 << 20
    )
    await producer.start()
    try:
        pending = []
        for part, key, value in msgs:
            pending.append(await producer.send(topic, value, key=key, partition=part))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
