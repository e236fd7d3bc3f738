"""Exactness of a worker run: the published top-50 against a brute-force recount of the produced events."""

from __future__ import annotations

import asyncio
import time

import orjson
from redis.asyncio import Redis

from streamer.core.events import EVENT_TYPE_INDEX, Event
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts

TOPK = 50


def recompute(events: list[Event], start_ms: int, end_ms: int, k: int = TOPK) -> list[PostCounts]:
    """The contract's top-k from the produced events (ids deduplicated, [start, end) window)."""
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for e in events:
        if start_ms <= e.ts_ms < end_ms and e.event_id not in seen:
            seen.add(e.event_id)
            counts.setdefault(e.post_id, [0, 0, 0, 0])[EVENT_TYPE_INDEX[e.event_type]] += 1
    return rank_posts([PostCounts(p, *c) for p, c in counts.items()], k)


def first_diff(a: list[PostCounts], b: list[PostCounts]) -> int:
    """1-based rank of the first difference of two rankings."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) + 1


async def verify_publish(redis_port: int, events: list[Event], done_ms: int, timeout_s: float = 30) -> str:
    """Wait for a complete stream publish generated after done_ms; "exact" or what differs from the recount.

    A merge that misses partitions is published only while no value exists yet (flagged incomplete), so
    the first publish of a fresh run can be incomplete: it is skipped, not judged.
    """
    client = Redis(port=redis_port)
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw, meta_raw = await client.mget(trending_key(1), trending_meta_key(1))
            meta = orjson.loads(meta_raw) if meta_raw else {}
            fresh = int(meta.get("generated_at_ms", 0)) > done_ms
            if raw is not None and fresh and meta.get("complete") and meta.get("mode") == "stream":
                expected = recompute(events, int(meta["window_start_ms"]), int(meta["window_end_ms"]))
                got = decode_trending(raw)
                if got == expected:
                    return "exact"
                return f"published {len(got)} posts, first difference at rank {first_diff(got, expected)}"
            await asyncio.sleep(0.2)
        return f"no complete publish after the drain within {timeout_s:.0f} s"
    finally:
        await client.aclose()
