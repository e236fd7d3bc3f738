"""Cost of counting people beside counting events: `python -m benchmarks people [--quick] [--core-only]`.

Two measurements of the wide workload (default settings otherwise), both modes in one run,
alternated so the load of the machine hits both alike:

- core: the pure step of every 100-event array (`core.batch.process_batch`, decode to records)
  of one process, CPU seconds per event, best of the repeats; and the bytes the partition
  states hold per in-window event afterwards (tracemalloc, which sees numpy's buffers);
- worker: one `streamer worker` per mode on a fresh topic; after it is ready, the workload is
  produced at a steady rate below what one worker drains (`--rate`, so both modes fetch alike
  batches: a worker that lags fetches bigger, cheaper batches); CPU (utime + stime from /proc)
  and RSS growth of the worker per event, and whether the publish equals the recount in its
  mode.

Writes results/people.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from benchmarks.stream_cases import Rig, _workers, unique
from benchmarks.stream_exact import first_diff
from benchmarks.stream_worker import wait_processed
from benchmarks.stream_workloads import FULL, PARTITIONS, QUICK, messages, produce, wide_events
from streamer.core.batch import process_batch
from streamer.core.dedup import event_keys
from streamer.core.events import Event, decode_batch
from streamer.core.partition_state import PartitionState
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.people import Counting
from streamer.core.records import RecordColumns, encode_record
from streamer.core.scoring import PostCounts, rank_posts
from streamer.demo.services import start_redis, start_tansu
from streamer.kafka.admin import ensure_topics

OUT = Path(__file__).resolve().parent / "results" / "people.json"
MODES = {"events": Counting(), "people": Counting(people=True)}
CONFIG_OF = {"events": "default", "people": "people"}


def recount(events: list[Event], start_ms: int, end_ms: int, people: bool, k: int = 50
            ) -> list[PostCounts]:
    """Top-k of the window from the produced events, counting events or distinct accounts."""
    seen: set[str] = set()
    cells: dict[tuple[int, int], set[str] | set[int]] = {}
    for e in events:
        if start_ms <= e.ts_ms < end_ms and e.event_id not in seen:
            seen.add(e.event_id)
            cell = cells.setdefault((e.post_id, e.type_index), set())
            cell.add(e.user_id if people else e.event_id)  # type: ignore[arg-type]
    posts: dict[int, list[int]] = {}
    for (post, kind), who in cells.items():
        posts.setdefault(post, [0, 0, 0, 0])[kind] = len(who)
    return rank_posts([PostCounts(p, *c) for p, c in posts.items()], k)


def core_case(events: list[Event], now_ms: int, repeats: int) -> dict[str, Any]:
    """CPU s per event of process_batch over the workload's arrays, per mode (best of repeats)."""
    arrays = [(part, value) for part, _, value in messages(events, "array")]
    best = {mode: float("inf") for mode in MODES}
    for _ in range(repeats):
        for mode, counting in MODES.items():
            states = {p: PartitionState(p, 60, now_ms, counting) for p in range(PARTITIONS)}
            began = time.process_time()
            for part, value in arrays:
                process_batch(states[part], [value], now_ms, PARTITIONS)
            best[mode] = min(best[mode], (time.process_time() - began) / len(events))
    held = {mode: state_bytes(arrays, now_ms, counting) / len(events)
            for mode, counting in MODES.items()}
    return {"cpu_us_per_event": {m: round(v * 1e6, 2) for m, v in best.items()},
            "ratio": round(best["people"] / best["events"], 3),
            "state_bytes_per_event": {m: round(v, 1) for m, v in held.items()},
            "state_ratio": round(held["people"] / held["events"], 3),
            "record_bytes_per_event": record_bytes(arrays, now_ms)}


def record_bytes(arrays: list[tuple[int, bytes]], now_ms: int) -> dict[str, float]:
    """Changelog bytes per event of one record per array, without and with the accounts."""
    sizes = {"without_accounts": 0, "with_accounts": 0}
    n = 0
    for _, value in arrays:
        cols, _ = decode_batch([value], now_ms)
        high, low = event_keys(cols.event_ids)
        minutes = cols.ts_ms // 60_000
        base = (high, low, cols.post_ids, cols.types, minutes)
        sizes["without_accounts"] += len(encode_record(RecordColumns(*base)))
        sizes["with_accounts"] += len(encode_record(RecordColumns(*base, cols.user_ids)))
        n += len(cols.post_ids)
    return {k: round(v / n, 2) for k, v in sizes.items()}


def state_bytes(arrays: list[tuple[int, bytes]], now_ms: int, counting: Counting) -> int:
    """Bytes the partition states hold after every array (an untimed pass under tracemalloc)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        states = {p: PartitionState(p, 60, now_ms, counting) for p in range(PARTITIONS)}
        for part, value in arrays:
            process_batch(states[part], [value], now_ms, PARTITIONS)
        for state in states.values():
            state.window.held_minutes()  # pending batches sorted into their minute blocks
            if state.people is not None:
                state.people.held_events()
        return int(tracemalloc.get_traced_memory()[0] - base)
    finally:
        tracemalloc.stop()


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def verify(redis_port: int, events: list[Event], people: bool, after_ms: int,
                 timeout_s: float = 30) -> str:
    """"exact" once a complete publish after `after_ms` equals the recount, else what differs."""
    client = Redis(port=redis_port)
    detail = f"no complete publish within {timeout_s:.0f} s"
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            raw, meta_raw = await client.mget(trending_key(1), trending_meta_key(1))
            meta = orjson.loads(meta_raw) if meta_raw else {}
            if raw is not None and meta.get("complete") and meta.get("generated_at_ms", 0) > after_ms:
                want = recount(events, meta["window_start_ms"], meta["window_end_ms"], people)
                got = decode_trending(raw)
                if got == want:
                    return "exact"
                detail = f"first difference at rank {first_diff(got, want)}"
            await asyncio.sleep(0.2)
        return detail
    finally:
        await client.aclose()


async def paced(bootstrap: str, topic: str, events: list[Event], rate_eps: int) -> None:
    """Produce the workload's arrays at about `rate_eps` events per second."""
    msgs = messages(events, "array")
    per_second = max(1, rate_eps // 100)  # 100-event arrays
    began = time.monotonic()
    for i in range(0, len(msgs), per_second):
        await produce(bootstrap, topic, msgs[i:i + per_second])
        await asyncio.sleep(max(0.0, began + (i + per_second) / per_second - time.monotonic()))


async def worker_case(rig: Rig, mode: str, events: list[Event], rate_eps: int) -> dict[str, Any]:
    """One worker in `mode`: CPU and RSS growth per event while it drains the workload."""
    topic = unique(f"bench.people.{mode}")
    await ensure_topics(rig.bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    _, workers = _workers(rig, CONFIG_OF[mode], topic, 1)
    worker = workers[0]
    try:
        await worker.wait_ready(rig.drain_timeout_s)
        cpu0, rss0 = cpu_seconds(worker.pid), worker.rss()
        await paced(rig.bootstrap, topic, events, rate_eps)
        await wait_processed(workers, len(events), rig.drain_timeout_s)
        cpu1, rss1 = cpu_seconds(worker.pid), worker.rss()
        detail = await verify(rig.redis_port, events, mode == "people", time.time_ns() // 10**6)
    finally:
        worker.stop()
    return {"mode": mode, "events": len(events), "cpu_us_per_event": (cpu1 - cpu0) / len(events) * 1e6,
            "rss_per_event": (rss1 - rss0) / len(events), "rss_end": rss1, "publish": detail}


async def worker_cases(quick: bool, events: list[Event], repeats: int, rate_eps: int
                       ) -> list[dict[str, Any]]:
    """Both modes, alternated, on a private tansu and Redis."""
    redis, kafka = start_redis(), start_tansu()
    rows: list[dict[str, Any]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
            rig = Rig(f"127.0.0.1:{kafka.port}", redis.port, Path(tmp), quick)
            for _ in range(repeats):
                for mode in MODES:
                    rows.append(await worker_case(rig, mode, events, rate_eps))
                    print(f"worker {mode}: {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        kafka.stop()
        redis.stop()
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Best CPU and median RSS per event of each mode, and the people / events ratios."""
    out: dict[str, Any] = {}
    for mode in MODES:
        mine = [r for r in rows if r["mode"] == mode]
        rss = sorted(r["rss_per_event"] for r in mine)
        out[mode] = {"cpu_us_per_event": round(min(r["cpu_us_per_event"] for r in mine), 2),
                     "rss_per_event": round(rss[len(rss) // 2], 1),
                     "exact": all(r["publish"] == "exact" for r in mine)}
    out["cpu_ratio"] = round(out["people"]["cpu_us_per_event"] / out["events"]["cpu_us_per_event"], 3)
    out["rss_ratio"] = round(out["people"]["rss_per_event"] / out["events"]["rss_per_event"], 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run, write results/people.json, print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks people", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--core-only", action="store_true", help="skip the worker runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rate", type=int, default=10_000, help="events/s produced to the worker")
    args = parser.parse_args(argv)
    now = time.time_ns() // 10**6
    events = wide_events(QUICK if args.quick else FULL, now)
    doc: dict[str, Any] = {"command": "python -m benchmarks people " + " ".join(argv or sys.argv[2:]),
                           "events": len(events), "posts": len({e.post_id for e in events})}
    doc["core"] = core_case(events, now, max(args.repeats, 3))
    if not args.core_only:
        doc["rate_eps"] = args.rate
        doc["worker_runs"] = asyncio.run(worker_cases(args.quick, events, args.repeats, args.rate))
        doc["worker"] = summary(doc["worker_runs"])
    if not args.quick and not args.core_only:  # results/people.json holds full runs only
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "worker_runs"}, indent=2))
    worker = doc.get("worker", {})
    return 0 if args.core_only or (worker["events"]["exact"] and worker["people"]["exact"]) else 1
