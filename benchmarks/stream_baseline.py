"""Baselines: a raw aiokafka consumer (getmany, json.loads or orjson.loads, a dict count per post)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

Decoder = Callable[[bytes], Any]
DECODERS: dict[str, Decoder] = {"stdlib": json.loads, "orjson": orjson.loads}


async def raw_rate(
    bootstrap: str, topic: str, partitions: int, total: int, decoder: str, min_s: float
) -> float:
    """Events/s of the raw consumer over the whole topic, re-read until at least min_s passed.

    No consumer group (assign + seek): connects and fetches once untimed, so the figure is the
    steady read-decode-count rate, not the connect time.
    """
    decode = DECODERS[decoder]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        while not await consumer.getmany(timeout_ms=500, max_records=1):
            pass
        seen, began = 0, time.perf_counter()
        while seen == 0 or time.perf_counter() - began < min_s:
            await consumer.seek_to_beginning()
            counts = await drain(consumer, total, decode)
            seen += sum(counts.values())
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def drain(consumer: AIOKafkaConsumer, total: int, decode: Decoder) -> dict[int, int]:
    """Read until `total` events were decoded; the per-post counts (what the baseline computes)."""
    counts: dict[int, int] = {}
    seen = 0
    while seen < total:
        batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
        for records in batches.values():
            for rec in records:
                doc = decode(rec.value)
                for ev in doc if isinstance(doc, list) else (doc,):
                    counts[ev["post_id"]] = counts.get(ev["post_id"], 0) + 1
                    seen += 1
    return counts
