"""`python -m benchmarks soak [--minutes 130]`: one default worker under a steady realistic mix
long enough for the one-hour window to fill, turn over and settle; a second worker joins and
leaves once, and the first is killed with SIGKILL (and restarted) in the middle.

Checked: one publish every 10 minutes and every publish of the last 10 minutes, each against a
brute-force recount of the produced events (the producer pauses until the worker has read
everything, then the next publish is compared). Sampled every 10 s: RSS, CPU per event, stream
lag, sink lag, publish age. Writes soak.json, soak.png and soak.md into --out. Not for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from benchmarks.soak_report import figures, markdown, plot
from benchmarks.stream_exact import verify_publish
from benchmarks.stream_worker import CONFIGS, Target, Worker
from benchmarks.stream_workloads import uuid4_text
from streamer.core.events import Event
from streamer.core.partitioning import partition_for_post
from streamer.core.payloads import trending_meta_key
from streamer.demo.generate import TYPE_WEIGHTS
from streamer.demo.services import start_redis, start_tansu
from streamer.kafka.admin import ensure_topics

PARTITIONS = 4
SAMPLE_S = 10.0
CHECK_EVERY_S = 600.0
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "soak"
# The worker's own defaults (60 s publish, 600 s reconcile and suggestions), with the short
# consumer-group timers the test broker needs for prompt joins (rebalance time only).
SOAK_ENV = {"JOB_TRENDING_INTERVAL_SEC": "60", "JOB_RECONCILE_INTERVAL_SEC": "600",
            "JOB_SUGGESTION_INTERVAL_SEC": "600"}
CONFIGS.setdefault("soak", SOAK_ENV)  # the default configuration, at the default intervals
KINDS = [k for k, _ in TYPE_WEIGHTS]
WEIGHTS = [w for _, w in TYPE_WEIGHTS]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks soak", description=__doc__)
    p.add_argument("--minutes", type=float, default=130.0, help="length of the run")
    p.add_argument("--rate", type=int, default=200, help="events per second produced")
    p.add_argument("--posts", type=int, default=20_000, help="posts of the long tail")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--report-only", action="store_true",
                   help="recompute figures, plot and soak.md from --out/soak.json")
    return p.parse_args(argv)


@dataclass
class Mix:
    """The realistic mix: long-tail posts, 5 % duplicates, 1 % late, 0.5 % bad, 2 % misrouted."""

    posts: int
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    valid: list[Event] = field(default_factory=list)  # every valid event produced, for recounts
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("valid", "duplicate", "late", "bad", "misrouted"), 0))

    def batch(self, n: int, now_ms: int) -> list[tuple[int, bytes, bytes]]:
        """n messages (partition, key, value) of the mix."""
        out = []
        for _ in range(n):
            roll = self.rng.random()
            if roll < 0.005:
                self.counts["bad"] += 1
                out.append((self.rng.randrange(PARTITIONS), b"bad", self.rng.choice(
                    [b"not json{", b'{"event_id": "x", "post_id": 1}'])))
                continue
            if roll < 0.055 and self.valid:
                self.counts["duplicate"] += 1
                e = self.valid[-self.rng.randrange(1, min(len(self.valid), 5000) + 1)]
            else:
                late = roll < 0.065
                self.counts["late" if late else "valid"] += 1
                post = int(self.rng.paretovariate(1.2) * 10) % self.posts + 1
                ts = now_ms - (7_200_000 if late else self.rng.randrange(120_000))
                e = Event(uuid4_text(self.rng), post, self.rng.randrange(1, 100_000),
                          self.rng.choices(KINDS, WEIGHTS)[0], ts)
                self.valid.append(e)
            part = partition_for_post(e.post_id, PARTITIONS)
            if self.rng.random() < 0.02:
                self.counts["misrouted"] += 1
                part = (part + 1) % PARTITIONS
            out.append((part, str(e.post_id).encode(), orjson.dumps(e.to_dict())))
        return out

    def prune(self, now_ms: int) -> None:
        """Forget events older than two windows (they can no longer be in a checked window)."""
        cut = now_ms - 2 * 3_600_000
        if self.valid and self.valid[0].ts_ms < cut:
            self.valid = [e for e in self.valid if e.ts_ms >= cut]


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scrape(w: Worker) -> dict[str, float] | None:
    """Summed samples of a worker's /metrics by name (None while it does not answer)."""
    status, text = await w.get("/metrics")
    if status != 200:
        return None
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = line.split("{")[0].split(" ")[0]
            out[name] = out.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return out


class Soak:
    """The run: services, workers, producer, sampler, checkpoints and the timeline."""

    def __init__(self, args: argparse.Namespace, root: Path, target: Target) -> None:
        self.args = args
        self.root = root
        self.target = target
        self.mix = Mix(args.posts)
        self.gate = asyncio.Event()
        self.gate.set()
        self.workers: dict[str, Worker] = {}
        self.cpu_dead_s = 0.0  # CPU of worker processes that ended (kept in the per-event cost)
        self.samples: list[dict[str, Any]] = []
        self.checks: list[dict[str, Any]] = []
        self.marks: list[tuple[float, str]] = []
        self.started = time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def start_worker(self, name: str) -> Worker:
        w = Worker("soak", self.target, self.root / name).start()
        self.workers[name] = w
        return w

    async def produce(self, stop: asyncio.Event) -> None:
        """`rate` messages a second while the gate is open."""
        producer = AIOKafkaProducer(bootstrap_servers=self.target.bootstrap, linger_ms=20)
        await producer.start()
        try:
            while not stop.is_set():
                await self.gate.wait()
                tick = time.monotonic()
                for part, key, value in self.mix.batch(self.args.rate, wall_ms()):
                    await producer.send(self.target.topic, value, key=key, partition=part)
                await producer.flush()
                self.mix.prune(wall_ms())
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        finally:
            await producer.stop()

    async def sample(self, stop: asyncio.Event) -> None:
        """Every SAMPLE_S: RSS and CPU of the first worker, lags, publish age, events counted."""
        while not stop.is_set():
            self.samples.append(await self.one_sample())
            await asyncio.sleep(SAMPLE_S)

    async def one_sample(self) -> dict[str, Any]:
        alive = {n: w for n, w in self.workers.items() if w.proc and w.proc.poll() is None}
        scraped = {n: await scrape(w) for n, w in alive.items()}
        answering = [m for m in scraped.values() if m is not None]
        first = self.workers.get("a")
        rss = first.rss() if first is not None and "a" in alive else None
        age = await self.publish_age_s()
        return {
            "t_s": round(self.elapsed_s(), 1), "rss_bytes": rss,
            "cpu_s": self.cpu_dead_s + sum(cpu_s(w.pid) for w in alive.values()),
            "processed": sum(m.get("streamer_events_processed_total", 0.0) for m in answering),
            "lag": sum(m.get("streamer_consumer_lag", 0.0) for m in answering) if answering else None,
            "sink_lag": (sum(m.get("streamer_sink_lag", 0.0) for m in answering)
                         if answering else None),
            "publish_age_s": age, "producing": self.gate.is_set(),
        }

    async def publish_age_s(self) -> float | None:
        client = Redis(port=self.target.redis_port)
        try:
            raw = await client.get(trending_meta_key(1))
        finally:
            await client.aclose()
        return None if raw is None else (wall_ms() - orjson.loads(raw)["generated_at_ms"]) / 1000

    async def checkpoint(self, why: str) -> None:
        """Pause the producer, wait until everything produced is read, compare the next publish."""
        self.gate.clear()
        await asyncio.sleep(1.5)  # the producer's current second ends
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = await self.one_sample()
            if s["lag"] == 0:
                break
            await asyncio.sleep(1)
        done_ms = wall_ms()
        verdict = await verify_publish(self.target.redis_port, list(self.mix.valid), done_ms, 90)
        self.checks.append({"t_s": round(self.elapsed_s(), 1), "why": why, "verdict": verdict})
        print(f"[{self.elapsed_s():7.0f}s] check ({why}): {verdict}", file=sys.stderr, flush=True)
        self.gate.set()

    def mark(self, what: str) -> None:
        self.marks.append((round(self.elapsed_s(), 1), what))
        print(f"[{self.elapsed_s():7.0f}s] {what}", file=sys.stderr, flush=True)

    async def timeline(self) -> None:
        """Join at 35 %, leave at 50 %, SIGKILL + restart at 60 %, checks every 10 min and in
        the last 10 minutes every publish."""
        total_s = self.args.minutes * 60
        plan = [(0.35, self.join), (0.50, self.leave), (0.60, self.kill_restart)]
        next_check = CHECK_EVERY_S
        final_s = total_s - min(CHECK_EVERY_S, total_s / 3)
        while self.elapsed_s() < total_s:
            if plan and self.elapsed_s() >= plan[0][0] * total_s:
                await plan.pop(0)[1]()
            elif self.elapsed_s() >= final_s:
                await asyncio.sleep(20)  # ~20 s of traffic before each checked publish
                await self.checkpoint("last minutes")
            elif self.elapsed_s() >= next_check:
                next_check += CHECK_EVERY_S
                await self.checkpoint("every 10 minutes")
            else:
                await asyncio.sleep(1)

    async def join(self) -> None:
        self.mark("worker b joins")
        await self.start_worker("b").wait_ready(300)

    async def leave(self) -> None:
        self.mark("worker b leaves (SIGTERM)")
        b = self.workers.pop("b")
        self.cpu_dead_s += cpu_s(b.pid)
        await asyncio.to_thread(b.stop)

    async def kill_restart(self) -> None:
        self.mark("worker a killed (SIGKILL), restarted")
        a = self.workers["a"]
        self.cpu_dead_s += cpu_s(a.pid)
        os.killpg(a.pid, signal.SIGKILL)
        if a.proc is not None:
            await asyncio.to_thread(a.proc.wait, 10)
        await self.start_worker("a").wait_ready(600)
        self.mark("worker a ready again")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    redis, kafka = start_redis(), start_tansu()
    try:
        with tempfile.TemporaryDirectory(prefix="streamer-soak-") as tmp:
            target = Target(redis.port, f"127.0.0.1:{kafka.port}", "soak.events", "soak")
            await ensure_topics(target.bootstrap, {target.topic: PARTITIONS,
                                                   target.topic + ".dlq": PARTITIONS})
            soak = Soak(args, Path(tmp), target)
            await soak.start_worker("a").wait_ready(300)
            soak.started = time.monotonic()
            stop = asyncio.Event()
            helpers = [asyncio.create_task(soak.produce(stop)), asyncio.create_task(soak.sample(stop))]
            try:
                await soak.timeline()
            finally:
                stop.set()
                soak.gate.set()
                await asyncio.gather(*helpers, return_exceptions=True)
                for w in soak.workers.values():
                    await asyncio.to_thread(w.stop)
            return {"minutes": args.minutes, "rate": args.rate, "posts": args.posts,
                    "mix": soak.mix.counts, "samples": soak.samples, "checks": soak.checks,
                    "marks": soak.marks}
    finally:
        kafka.stop()
        redis.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Run, then write soak.json, soak.png and soak.md; exit 1 if a checked publish was inexact."""
    args = parse_args(argv)
    if args.report_only:
        doc = json.loads((args.out / "soak.json").read_text())
    else:
        doc = asyncio.run(run(args))
        doc["command"] = "python -m benchmarks soak " + " ".join(argv or sys.argv[2:])
    doc["figures"] = figures(doc)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot(doc, args.out / "soak.png")
    text = markdown(doc, "soak.png")
    (args.out / "soak.md").write_text(text)
    print(text)
    return 0 if doc["figures"]["inexact"] == 0 and doc["figures"]["checked"] > 0 else 1
