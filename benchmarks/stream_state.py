"""Durable-state figures: changelog bytes per event (from the broker) and rebuild seconds per million.

The rebuild runs in a child process pinned to one core: `python -m benchmarks.stream_state EVENTS`.
Everything it does with the state goes through benchmarks/state_adapter.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition

from benchmarks import state_adapter as sa
from benchmarks.stream_workloads import uuid4_text
from streamer.core.window import MINUTE_MS

REBUILD_NOW_MS = 1_795_913_760_000  # fixed "now" on a minute boundary: identical runs
EVENTS_PER_RECORD = 500  # one record per handled batch; the worker polls at most 500 messages


@dataclass(frozen=True, slots=True)
class ChangelogSize:
    """What one worker run left in its changelog topic."""

    records: int
    value_bytes: int


async def changelog_size(bootstrap: str, app_id: str) -> ChangelogSize:
    """Sum of value sizes of every record in the run's changelog topic (tombstones count 0)."""
    topic = sa.changelog_topic(app_id)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records = size = idle = 0
        while idle < 2:  # the workers have stopped: two empty 1 s fetches mean the end was read
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            idle = 0 if batches else idle + 1
            for batch in batches.values():
                for rec in batch:
                    records += 1
                    size += len(rec.value or b"")
        return ChangelogSize(records, size)
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        await consumer.topics()  # refreshes the cluster metadata
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return set(parts)
        await asyncio.sleep(0.2)
    raise RuntimeError(f"changelog topic {topic} not found")


def rebuild_rows(events: int, seed: int = 21) -> Iterator[sa.EventRow]:
    """Wide in-window events: UUID4 ids, ~4 per post, minutes spread over the window's 59 full minutes."""
    rng = random.Random(seed)
    posts = max(1, events // 4)
    first_ms = REBUILD_NOW_MS - 59 * MINUTE_MS
    for _ in range(events):
        yield (
            uuid4_text(rng),
            rng.randrange(1, posts + 1),
            rng.randrange(4),
            first_ms + rng.randrange(59 * MINUTE_MS),
        )


def rebuild_probe(events: int) -> dict[str, float]:
    """Build the records (untimed), then time one load from them: wall and CPU seconds on one core."""
    records = list(sa.build_records(rebuild_rows(events), EVENTS_PER_RECORD))
    value_bytes = sum(len(v) for _, v in records)
    state = sa.new_state(REBUILD_NOW_MS)
    gc.collect()  # the collector stays on during the load, as in the worker's recovery
    began, began_cpu = time.perf_counter(), time.process_time()
    sa.load_records(state, records)
    load_s, load_cpu_s = time.perf_counter() - began, time.process_time() - began_cpu
    return {
        "load_cpu_s": load_cpu_s,
        "events": events,
        "records": len(records),
        "value_bytes": value_bytes,
        "load_s": load_s,
        "counted": sa.counted_events(state),
        "posts": sa.active_posts(state),
    }


def rebuild(events: int, timeout_s: float = 1200) -> dict[str, float]:
    """rebuild_probe in a fresh child process pinned to one core."""
    cmd = [sys.executable, "-m", "benchmarks.stream_state", str(events)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode:
        raise RuntimeError(f"rebuild probe failed: {done.stderr[-1500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(json.dumps(rebuild_probe(int(sys.argv[1]))))
