"""Per post and per event growth of one worker, with the first phase's one-time cost split off.

`python -m benchmarks rss-phases [--config default|tuned] [--set NAME=VALUE] [--posts N]
[--worker-src DIR]`: the
phases of `python -m benchmarks stream --only rss` (N posts x 1 event, then 3 more events per
post) with a phase between them: N *other* posts x 1 event. Growth in the first phase also holds
what the worker's first work loads once (library pages, heap the allocator keeps, buffers that
reach their size); the second phase is the same work again, so the difference of the two is that
one-time part and the second is the cost per further post. Bytes of VmRSS, RssAnon and RssFile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import memory_status
from benchmarks.stream_cases import Rig, _workers, unique
from benchmarks.stream_worker import CONFIGS, SUNK, wait_processed
from benchmarks.stream_workloads import PARTITIONS, events_for_posts, messages, produce
from streamer.demo.services import start_redis, start_tansu
from streamer.kafka.admin import ensure_topics

PHASES = ("posts", "other posts", "further events")


async def measure(rig: Rig, config: str, posts: int) -> dict[str, Any]:
    """Run the three phases in one fresh worker; growth per unit of each phase."""
    now_ms = int(time.time() * 1000)
    ids = random.Random(31).sample(range(1, 10**12), 2 * posts)
    first, other = ids[:posts], ids[posts:]
    phases = [events_for_posts(first, 1, now_ms, 32), events_for_posts(other, 1, now_ms, 34),
              events_for_posts(first, 3, now_ms, 33)]
    topic = unique("bench.rss")
    await ensure_topics(rig.bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    _, workers = _workers(rig, config, topic, 1)
    worker, total = workers[0], 0
    try:
        await worker.wait_ready(rig.drain_timeout_s)
        status = [memory_status(worker.pid)]
        for events in phases:
            total += len(events)
            await produce(rig.bootstrap, topic, messages(events, "array"))
            await wait_processed(workers, total, rig.drain_timeout_s)
            if worker.sinks:
                await wait_processed(workers, total, rig.drain_timeout_s, SUNK)
            status.append(memory_status(worker.pid))
        counted = await worker.processed()
    finally:
        worker.stop()
    out: dict[str, Any] = {"config": config, "posts": posts, "events": total, "counted": counted}
    for key in ("rss", "anon", "file"):
        out[key] = {name: round((status[i + 1][key] - status[i][key]) / len(phases[i]), 1)
                    for i, name in enumerate(PHASES)}
    return out


async def run(config: str, posts: int) -> dict[str, Any]:
    """A private broker and Redis for one measurement."""
    redis, kafka = start_redis(), start_tansu()
    try:
        with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
            return await measure(Rig(f"127.0.0.1:{kafka.port}", redis.port, Path(tmp), False), config, posts)
    finally:
        kafka.stop()
        redis.stop()


def main(argv: list[str]) -> int:
    """Print one JSON line: bytes per unit of each phase (VmRSS, RssAnon, RssFile)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks rss-phases", description=__doc__)
    p.add_argument("--config", choices=("default", "tuned"), default="default", help="worker settings")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="one more worker setting (e.g. STREAMER_CLICKHOUSE_SINK=false)")
    p.add_argument("--posts", type=int, default=100_000, help="posts per phase")
    p.add_argument("--worker-src", type=Path, help="run the worker from this source tree (a before/after)")
    args = p.parse_args(argv)
    if args.worker_src is not None:  # the worker is `python -m streamer` started in the working dir
        os.environ["PYTHONPATH"] = str(args.worker_src.resolve())
        os.chdir(args.worker_src)
    config = args.config
    if args.set:
        config = f"{args.config}+"
        CONFIGS[config] = {**CONFIGS[args.config], **dict(item.split("=", 1) for item in args.set)}
    out = asyncio.run(run(config, args.posts))
    print(json.dumps(out))
    return 0 if out["counted"] == out["events"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
