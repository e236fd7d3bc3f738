"""Throughput of one stream worker next to a raw aiokafka consumer, on the same topics, same run.

Usage: .venv/bin/python benchmarks/stream_throughput_probe.py [--events 100000] [--sink on|off]

Starts a private tansu broker and redis-server, produces the same events as single-event
messages and as 100-event JSON arrays, then measures (each on a fresh consumer group):
  raw aiokafka getmany + orjson decode + dict count (the ceiling),
  a stock faust-streaming agent iterating the stream (Faust's own transport, "before"),
  `streamer worker` (lean transport, dedup, state records, partials, sink) ("after"),
and the worker's RSS holding 100k active posts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streamer.demo.services import start_redis, start_tansu
from streamer.kafka_admin import ensure_topics
from streamer.stream.partitioning import partition_for_post
from tests.stream_helpers import FAST_GROUP_ENV, Message, WorkerProcess, produce, unique, wait_metric

PARTITIONS = 4


def make_events(n: int, posts: int, seed: int) -> list[dict[str, Any]]:
    """n distinct events over `posts` posts, all inside the current window."""
    rng = random.Random(seed)
    now = time.time_ns() // 1_000_000
    kinds = ("view", "like", "comment", "share")
    return [
        {
            "event_id": f"b{seed}-{i}",
            "post_id": rng.randrange(posts),
            "user_id": rng.randrange(10**6),
            "event_type": kinds[rng.randrange(4)],
            "ts": now - rng.randrange(60_000),
        }
        for i in range(n)
    ]


def singles(events: list[dict[str, Any]]) -> list[Message]:
    """One message per event, keyed by post."""
    return [(str(e["post_id"]).encode(), orjson.dumps(e), None) for e in events]


def batches(events: list[dict[str, Any]], size: int = 100) -> list[Message]:
    """JSON arrays of `size` events of one partition each (a batching producer), keyed by a post."""
    by_post: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        by_post.setdefault(partition_for_post(e["post_id"], PARTITIONS), []).append(e)
    out: list[Message] = []
    for group in by_post.values():
        for i in range(0, len(group), size):
            chunk = group[i : i + size]
            out.append((str(chunk[0]["post_id"]).encode(), orjson.dumps(chunk), None))
    return out


async def raw_consume(bootstrap: str, topic: str, expect: int) -> float:
    """Events/s of aiokafka getmany + orjson + dict count until `expect` events were seen."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=unique("raw"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    counts: dict[int, int] = {}
    seen = 0
    started = 0.0
    try:
        while seen < expect:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            if batch and not started:
                started = time.perf_counter()
            for records in batch.values():
                for record in records:
                    doc = orjson.loads(record.value)
                    for ev in doc if isinstance(doc, list) else [doc]:
                        counts[ev["post_id"]] = counts.get(ev["post_id"], 0) + 1
                        seen += 1
    finally:
        await consumer.stop()
    return seen / (time.perf_counter() - started)


async def stock_faust(bootstrap: str, topic: str, expect: int) -> float:
    """Events/s of a stock faust-streaming agent (default transport) counting the messages."""
    import faust

    app = faust.App(
        unique("stock"),
        broker=f"kafka://{bootstrap}",
        web_enabled=False,
        store="memory://",
        broker_rebalance_timeout=3,
        broker_session_timeout=6,
        broker_heartbeat_interval=1,
        consumer_auto_offset_reset="earliest",
    )
    src = app.topic(topic, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "t0": 0.0, "t1": 0.0}
    done = asyncio.Event()

    @app.agent(src)
    async def count(stream: Any) -> None:
        async for value in stream:
            if not state["n"]:
                state["t0"] = time.perf_counter()
            doc = orjson.loads(value)
            state["n"] += len(doc) if isinstance(doc, list) else 1
            if state["n"] >= expect:
                state["t1"] = time.perf_counter()
                done.set()

    await app.start()
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        await asyncio.wait_for(app.stop(), 30)
    return state["n"] / (state["t1"] - state["t0"])


async def worker_rate(
    env: dict[str, str], topic: str, messages: list[Message], expect: int, root: Path
) -> tuple[float, int]:
    """Events/s of `streamer worker` from the moment production starts (worker idle and ready)
    until it counted `expect` events, and its RSS (kB) at the end."""
    w = WorkerProcess({**env, "KAFKA_EVENTS_TOPIC": topic, "STREAMER_APP_ID": unique("w")},
                      root / unique("w")).start()
    try:
        w.wait_ready(120)
        t0 = time.perf_counter()
        if messages:
            await produce(env["KAFKA_BOOTSTRAP_SERVERS"], topic, messages)
        await wait_metric(w, "streamer_events_processed_total", expect, timeout_s=600)
        rate = expect / (time.perf_counter() - t0)
        if not expect:
            await asyncio.sleep(3)
        assert w.proc is not None
        return rate, rss_kb(w.proc.pid)
    finally:
        w.terminate()


def rss_kb(pid: int) -> int:
    """Resident set size of a process in kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--sink", choices=["on", "off"], default="on")
    parser.add_argument("--skip-stock", action="store_true")
    args = parser.parse_args()
    redis, kafka = start_redis(), start_tansu()
    root = Path(tempfile.mkdtemp(prefix="stream-probe-"))
    bootstrap = f"127.0.0.1:{kafka.port}"
    env = {
        **os.environ,
        **FAST_GROUP_ENV,
        "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "STREAMER_TABLE_STORE": "rocksdb",
        "STREAMER_CLICKHOUSE_SINK": "true" if args.sink == "on" else "false",
        "JOB_TRENDING_INTERVAL_SEC": "5",
        "LOG_LEVEL": "WARNING",
    }
    try:
        n = args.events
        events = make_events(n, 5_000, seed=1)
        names = ("single", "batch", "wsingle", "wbatch", "posts", "empty")
        t = {name: unique(name) for name in names}
        await ensure_topics(bootstrap, {topic: PARTITIONS for topic in t.values()})
        single_msgs, batch_msgs = singles(events), batches(events)
        await produce(bootstrap, t["single"], single_msgs)
        await produce(bootstrap, t["batch"], batch_msgs)
        wide = make_events(100_000, 10**12, seed=2)  # 100k distinct posts
        print(f"events={n} partitions={PARTITIONS} sink={args.sink} cpu_count={os.cpu_count()}")
        cases = (("single-event messages", "single", single_msgs),
                 ("100-event messages", "batch", batch_msgs))
        for name, key, msgs in cases:
            raw = await raw_consume(bootstrap, t[key], n)
            print(f"raw aiokafka+orjson, {name}: {raw:,.0f} events/s")
            if not args.skip_stock:
                stock = await stock_faust(bootstrap, t[key], n)
                print(f"stock faust agent (no state), {name}: {stock:,.0f} events/s")
            rate, _ = await worker_rate(env, t["w" + key], msgs, n, root)
            print(f"streamer worker, {name} (incl. producing them): {rate:,.0f} events/s")
        _, idle_rss = await worker_rate(env, t["empty"], [], 0, root)
        print(f"streamer worker RSS idle (empty topic): {idle_rss / 1024:,.0f} MiB")
        rate, rss = await worker_rate(env, t["posts"], batches(wide), len(wide), root)
        distinct = len({e["post_id"] for e in wide})
        print(
            f"streamer worker RSS with {distinct:,} active posts: {rss / 1024:,.0f} MiB "
            f"({rate:,.0f} events/s on that topic)"
        )
    finally:
        redis.stop()
        kafka.stop()


if __name__ == "__main__":
    asyncio.run(main())
