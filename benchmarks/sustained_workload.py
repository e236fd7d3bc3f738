"""The wide workload of the sustained benchmark as wire messages, and the raw consumer it is held against.

70 % of the events on a long tail of posts that get one or two events each (random ids up to
10^12), 30 % on a hot head of 1,000 posts; event ids 32-hex strings (not UUIDs) or UUID4s; ts
uniform over the last 40 minutes; keyed and placed by post over 4 partitions.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import uuid
from typing import Any, Literal

import numpy as np
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks.stream_workloads import ARRAY_SIZE, PARTITIONS, Message
from streamer.core.events import EVENT_TYPES
from streamer.core.partitioning import partitions_of

HOT_POSTS = 1_000
HOT_SHARE = 0.3
SPAN_MS = 40 * 60_000
Ids = Literal["hex", "uuid"]


def _post_ids(total: int, rng: np.random.Generator) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Post of each event, shuffled: the hot head, then tail posts with one or two events."""
    hot = rng.integers(1, 10**12, HOT_POSTS, dtype=np.int64)
    n_hot = int(total * HOT_SHARE)
    tail_events = total - n_hot
    tail_posts = rng.integers(1, 10**12, tail_events, dtype=np.int64)
    each = 1 + (rng.random(tail_events) >= 0.7)  # 70 % of tail posts get one event, 30 % two
    tail = np.repeat(tail_posts, each)[:tail_events]
    posts = np.concatenate([rng.choice(hot, n_hot), tail])
    rng.shuffle(posts)
    return posts


def _event_ids(total: int, ids: Ids, seed: int) -> list[str]:
    """32-hex strings (not canonical UUIDs) or canonical UUID4s, all distinct."""
    raw = np.random.default_rng(seed).bytes(16 * total)
    if ids == "hex":
        text = raw.hex()
        return [text[i : i + 32] for i in range(0, 32 * total, 32)]
    return [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * total, 16)]


def wide_messages(total: int, form: str, ids: Ids, now_ms: int, seed: int = 7) -> list[Message]:
    """The wide workload as single-event messages or 100-event arrays of one partition."""
    rng = np.random.default_rng(seed)
    posts = _post_ids(total, rng)
    users = rng.integers(1, 10**9, total).tolist()
    kinds = np.array(EVENT_TYPES)[rng.choice(4, total, p=[0.8, 0.12, 0.05, 0.03])].tolist()
    ts = (now_ms - rng.integers(0, SPAN_MS, total)).tolist()
    event_ids = _event_ids(total, ids, seed)
    parts = partitions_of(posts, PARTITIONS).tolist()
    post_list = posts.tolist()
    docs = [{"event_id": e, "post_id": p, "user_id": u, "event_type": k, "ts": t}
            for e, p, u, k, t in zip(event_ids, post_list, users, kinds, ts, strict=True)]
    if form == "single":
        return [(part, str(d["post_id"]).encode(), orjson.dumps(d))
                for part, d in zip(parts, docs, strict=True)]
    by_part: dict[int, list[dict[str, Any]]] = {}
    for part, d in zip(parts, docs, strict=True):
        by_part.setdefault(part, []).append(d)
    return [(part, str(ds[i]["post_id"]).encode(), orjson.dumps(ds[i : i + ARRAY_SIZE]))
            for part, ds in sorted(by_part.items()) for i in range(0, len(ds), ARRAY_SIZE)]


async def raw_drain(
    bootstrap: str, topic: str, total: int, partitions: list[int] | None = None, start_at: float = 0.0
) -> dict[str, float]:
    """A raw consumer (getmany, stdlib json.loads, a dict count per post): rates and CPU per event.

    Reads `partitions` (all by default) until `total` events, connected but waiting until
    `start_at` (CLOCK_MONOTONIC: consumers side by side begin together); timed from its first
    decoded event to its last; CPU is this process's own (all threads).
    """
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = range(PARTITIONS) if partitions is None else partitions
        consumer.assign([TopicPartition(topic, p) for p in parts])
        await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        counts: dict[int, int] = {}
        seen, marks = 0, []  # (perf time, cpu s, events seen) after each fetch
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=1_000)
            for records in batches.values():
                for rec in records:
                    doc = json.loads(rec.value)
                    for ev in doc if isinstance(doc, list) else (doc,):
                        counts[ev["post_id"]] = counts.get(ev["post_id"], 0) + 1
                        seen += 1
            if seen:
                marks.append((time.perf_counter(), time.process_time(), seen))
    finally:
        await consumer.stop()
    return _raw_figures(marks, total)


def _raw_figures(marks: list[tuple[float, float, int]], total: int) -> dict[str, float]:
    t0, c0, n0 = marks[0]
    t1, c1, _ = marks[-1]
    lo = next(m for m in marks if m[2] >= total * 0.1)
    hi = next(m for m in marks if m[2] >= total * 0.9)
    return {
        "rate": (total - n0) / max(t1 - t0, 1e-9),
        "rate_10_90": (hi[2] - lo[2]) / max(hi[0] - lo[0], 1e-9),
        "cpu_us": (c1 - c0) / max(total - n0, 1) * 1e6,
        "t0": t0,  # CLOCK_MONOTONIC, comparable across processes (two consumers side by side)
        "t1": t1,
        "n0": n0,
        "cpu_s": c1 - c0,
    }


def events_by_partition(msgs: list[Message]) -> dict[int, int]:
    """Events per partition of the produced messages (what each of two raw consumers must read)."""
    out: dict[int, int] = {}
    for part, _, value in msgs:
        out[part] = out.get(part, 0) + value.count(b'"event_id"')
    return out


def main() -> int:
    """`python -m benchmarks.sustained_workload BOOTSTRAP TOPIC TOTAL [P,P,... [START_AT]]`: JSON out."""
    bootstrap, topic, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
    parts = [int(p) for p in sys.argv[4].split(",")] if len(sys.argv) > 4 else None
    start_at = float(sys.argv[5]) if len(sys.argv) > 5 else 0.0
    print(json.dumps(asyncio.run(raw_drain(bootstrap, topic, total, parts, start_at))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
