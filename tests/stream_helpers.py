"""Helpers for stream tests: worker subprocesses, a producer, a DLQ reader, a brute-force oracle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streamer.core.events import EVENT_TYPES
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import Window
from streamer.demo.services import LocalService, free_port
from streamer.trending.write import read_together
from tests.waiting import await_until, value_when

FAST_GROUP_ENV = {
    "STREAMER_REBALANCE_TIMEOUT_SEC": "3",
    "STREAMER_SESSION_TIMEOUT_SEC": "6",
    "STREAMER_HEARTBEAT_INTERVAL_SEC": "1",
    "STREAMER_COMMIT_INTERVAL_MS": "500",
    "JOB_TRENDING_INTERVAL_SEC": "2",
    "STREAMER_TABLE_STORE": "memory",
    "STREAMER_SINK_FLUSH_MS": "200",
    "JOB_SUGGESTION_INTERVAL_SEC": "3600",
}


def unique(prefix: str) -> str:
    """A fresh name for a topic or an app id."""
    return f"{prefix}-{secrets.token_hex(4)}"


def now_ms() -> int:
    """Wall clock in epoch ms."""
    return time.time_ns() // 1_000_000


@dataclass
class WorkerProcess:
    """`python -m streamer worker` as a child process with its own web port and data dir."""

    env: dict[str, str]
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    command: str = "worker"  # or "sink": same HTTP endpoints and signals

    def start(self) -> WorkerProcess:
        """Spawn the worker (logs go to a file in its data dir)."""
        env = dict(self.env)
        env.update({"STREAMER_WEB_PORT": str(self.port), "STREAMER_DATA_DIR": str(self.data_dir)})
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / f"worker-{self.port}-{secrets.token_hex(2)}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", self.command], env=env, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        return self

    def get(self, path: str) -> tuple[int, bytes]:
        """HTTP GET on the worker's port: (status, body); (0, b"") when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return int(r.status), bytes(r.read())
        except urllib.error.HTTPError as exc:
            return int(exc.code), bytes(exc.read())
        except OSError:
            return 0, b""

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Block until /readyz answers 200."""
        self.wait_ready_statuses(timeout_s)

    def wait_ready_statuses(self, timeout_s: float = 60.0) -> list[int]:
        """Block until /readyz answers 200; every distinct status seen on the way, in order."""
        seen: list[int] = []
        deadline = time.monotonic() + timeout_s
        port_retries = 2
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None and port_retries and self._port_was_taken():
                port_retries -= 1  # free_port() raced with another process: a new port
                self.port = free_port()
                self.start()
                continue
            assert self.proc.poll() is None, self.tail()
            status = self.get("/readyz")[0]
            if status and (not seen or seen[-1] != status):
                seen.append(status)
            if status == 200:
                return seen
            time.sleep(0.1)
        raise AssertionError(f"worker not ready after {timeout_s}s\n{self.tail()}")

    def _port_was_taken(self) -> bool:
        """The child exited because its web port was bound by someone else meanwhile."""
        return "address already in use" in self.tail(20).lower()

    def metric(self, name: str, labels: str = "") -> float:
        """Value of one sample from /metrics (0 when absent)."""
        _, body = self.get("/metrics")
        prefix = f"{name}{{{labels}}} " if labels else f"{name} "
        for line in body.decode().splitlines():
            if line.startswith(prefix):
                return float(line.split()[-1])
        return 0.0

    def terminate(self, timeout_s: float = 60.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, lines: int = 60) -> str:
        """Last lines of the worker log."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


async def wait_metric(worker: WorkerProcess, name: str, at_least: float, timeout_s: float = 60) -> None:
    """Poll a worker metric until it reaches a value."""
    await await_until(lambda: worker.metric(name) >= at_least, timeout_s, f"{name} >= {at_least}", 0.05)


def event(event_id: str, post_id: int, ts: int, event_type: str = "view", user_id: int = 1) -> dict[str, Any]:
    """One wire event."""
    return {"event_id": event_id, "post_id": post_id, "user_id": user_id,
            "event_type": event_type, "ts": ts}


def random_events(n: int, posts: int, ts: int, seed: int) -> list[dict[str, Any]]:
    """n events over `posts` posts with skewed popularity, all at about `ts`."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        post = int(rng.paretovariate(1.2)) % posts
        kind = rng.choices(EVENT_TYPES, weights=(80, 12, 5, 3))[0]
        out.append(event(f"e{seed}-{i}", post, ts - rng.randint(0, 30_000), kind, rng.randint(1, 99)))
    return out


Message = tuple[bytes | None, bytes, int | None]  # key, value, partition (None = partitioner)


def keyed(events: Iterable[dict[str, Any]]) -> list[Message]:
    """One message per event keyed by its post_id (the contract's normal case)."""
    return [(str(e["post_id"]).encode(), orjson.dumps(e), None) for e in events]


async def produce(bootstrap: str, topic: str, messages: Sequence[Message],
                  security: Mapping[str, Any] | None = None) -> None:
    """Send messages and wait for all acks (security: streamer.kafka.client.client_kwargs)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **(security or {}))
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key, partition=partition)
                   for key, value, partition in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 20.0,
                     drain: bool = False) -> list[Any]:
    """Read a topic from the start until `expect` records arrived; AssertionError on timeout
    (with `drain`, whatever arrived in `timeout_s` is the answer: a read of everything)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(out) < expect and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    assert drain or len(out) >= expect, f"{topic}: {len(out)} of {expect} records in {timeout_s}s"
    return out


async def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    """Sum over `topic`'s partitions of the offsets `group` has committed (0 when none)."""
    from aiokafka import TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)]
    finally:
        await consumer.stop()
    return sum(o for o in offsets if o is not None and o > 0)


def oracle(events: Iterable[dict[str, Any]], window: Window, k: int) -> list[PostCounts]:
    """Brute force: each event_id once (first seen), ts inside the window, ranked per contract."""
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for e in events:
        if e["event_id"] in seen:
            continue
        seen.add(e["event_id"])
        if window.contains(e["ts"]):
            cell = counts.setdefault(e["post_id"], [0, 0, 0, 0])
            cell[EVENT_TYPES.index(e["event_type"])] += 1
    return rank_posts([PostCounts(p, *c) for p, c in counts.items()], k)


async def wait_for_publish(redis: Any, after_ms: int, timeout_s: float = 30.0,
                           partitions: int | None = None) -> tuple[list[PostCounts], dict[str, Any]]:
    """Wait for a trending publish generated after `after_ms` (complete, when partitions given)."""

    def fits(got: tuple[list[PostCounts] | None, dict[str, Any] | None]) -> bool:
        posts, meta = got
        return posts is not None and meta is not None and meta["generated_at_ms"] > after_ms and (
            partitions is None or meta["partitions"] == list(range(partitions)))

    posts, meta = await value_when(lambda: read_trending(redis), fits, timeout_s, "a publish", 0.2)
    return posts, meta


class Cluster:
    """One test's topic, environment and worker processes."""

    def __init__(self, kafka: LocalService, redis_url: str, root: Path, partitions: int = 4,
                 prefix: str = "", **env: str) -> None:
        self.bootstrap = f"127.0.0.1:{kafka.port}"
        self.topic = unique(f"{prefix}events")
        self.dlq = self.topic + ".dlq"
        self.partitions = partitions
        self.root = root
        self.env = dict(os.environ)
        self.env.update(FAST_GROUP_ENV)
        self.env.update({
            "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_EVENTS_TOPIC": self.topic, "KAFKA_DLQ_TOPIC": self.dlq,
            "STREAMER_APP_ID": unique(f"{prefix}app"), "STREAMER_TOPIC_PARTITIONS": str(partitions),
            **env,
        })
        self.workers: list[WorkerProcess] = []

    def worker(self, name: str, **env: str) -> WorkerProcess:
        """Start a worker whose data dir is root/name (reused across restarts)."""
        w = WorkerProcess({**self.env, **env}, self.root / name).start()
        self.workers.append(w)
        return w

    def stop_all(self) -> list[int]:
        """SIGTERM every live worker; their exit codes."""
        return [w.terminate() for w in self.workers if w.proc and w.proc.poll() is None]

    def kill_all(self) -> None:
        """SIGKILL whatever is still running (fixture teardown), stopped ones included."""
        for w in self.workers:
            with contextlib.suppress(Exception):
                if w.proc is not None and w.proc.poll() is None:
                    os.kill(w.proc.pid, signal.SIGCONT)  # in case a test left it stopped
            w.kill()


async def read_trending(redis: Any) -> tuple[list[PostCounts] | None, dict[str, Any] | None]:
    """The published array and meta (None when absent)."""
    raw, raw_meta = await read_together(redis, [trending_key(1), trending_meta_key(1)])
    posts = decode_trending(raw) if raw is not None else None
    return posts, (orjson.loads(raw_meta) if raw_meta else None)


async def settle_exact(
    redis: Any, events: list[dict[str, Any]], partitions: int, timeout_s: float = 90.0,
    k: int = 50, after_ms: int = 0,
) -> tuple[list[PostCounts], list[PostCounts], dict[str, Any]]:
    """Poll complete publishes generated after `after_ms` until one equals the brute-force oracle
    over its own window; AssertionError with the last publish seen when none does in time."""
    deadline = time.monotonic() + timeout_s
    last: tuple[list[PostCounts], list[PostCounts], dict[str, Any]] | None = None
    seen = 0
    while time.monotonic() < deadline:
        got, got_meta = await read_trending(redis)
        if got is not None and got_meta and got_meta["generated_at_ms"] != seen \
                and got_meta["generated_at_ms"] > after_ms \
                and got_meta["partitions"] == list(range(partitions)):
            seen = got_meta["generated_at_ms"]
            want = oracle(events, Window(got_meta["window_start_ms"], got_meta["window_end_ms"]), k)
            last = (got, want, got_meta)
            if got == want:
                return last
        await asyncio.sleep(0.1)
    raise NotSettled(_settle_failure(timeout_s, after_ms, last), last)


class NotSettled(AssertionError):
    """settle_exact timed out; `last` is the last complete publish it saw with its oracle."""

    def __init__(self, message: str,
                 last: tuple[list[PostCounts], list[PostCounts], dict[str, Any]] | None) -> None:
        super().__init__(message)
        self.last = last


def _settle_failure(timeout_s: float, after_ms: int,
                    last: tuple[list[PostCounts], list[PostCounts], dict[str, Any]] | None) -> str:
    """What settle_exact last saw, for its timeout message."""
    head = f"no complete publish after {after_ms} equalled the oracle within {timeout_s}s"
    if last is None:
        return f"{head}: none seen"
    posts, want, meta = last
    wrong = [(g, w) for g, w in zip(posts, want, strict=False) if g != w][:3]
    return (f"{head}; last meta {meta}; {len(posts)} posts vs {len(want)} expected; "
            f"first differences {wrong}")
