"""`streamer worker` processes for the benchmarks: the two configurations, start, sample, RSS, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from benchmarks.common import memory_status, rss_bytes
from streamer.demo.services import free_port

# DEFAULT sets nothing beyond the contract's connection variables: RocksDB store, ClickHouse sink on
# the embedded chDB. TUNED turns the sink off and keeps the table in memory.
CONFIGS: dict[str, dict[str, str]] = {
    "default": {},
    "tuned": {"STREAMER_CLICKHOUSE_SINK": "false", "STREAMER_TABLE_STORE": "memory"},
    "sink-off": {"STREAMER_CLICKHOUSE_SINK": "false"},
    "people": {"JOB_TRENDING_COUNT": "people"},  # default, counting people (benchmarks/people_cost.py)
}
# Not on the hot path, set in both configurations: a publish every second (the exactness check
# waits for one after the drain), the hourly jobs out of the run, and short consumer-group timers
# (tansu group joins; they change start-up and rebalance time only).
COMMON_ENV = {
    "JOB_TRENDING_INTERVAL_SEC": "1",
    "JOB_SUGGESTION_INTERVAL_SEC": "3600",
    "JOB_RECONCILE_INTERVAL_SEC": "3600",
    "STREAMER_REBALANCE_TIMEOUT_SEC": "3",
    "STREAMER_SESSION_TIMEOUT_SEC": "6",
    "STREAMER_HEARTBEAT_INTERVAL_SEC": "1",
    "LOG_LEVEL": "WARNING",
}
PROCESSED = "streamer_events_processed_total"
SUNK = "streamer_sink_batch_size_sum"  # events the sink inserted into ClickHouse


@dataclass(frozen=True, slots=True)
class Target:
    """Where a worker connects and what it reads."""

    redis_port: int
    bootstrap: str
    topic: str
    app_id: str


def worker_env(config: str, target: Target, data_dir: Path, port: int) -> dict[str, str]:
    """The environment of one worker process in a named configuration."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMER_", "JOB_", "KAFKA_"))}
    env.update(COMMON_ENV)
    env.update(CONFIGS[config])
    env.update(
        {
            "REDIS_URL": f"redis://127.0.0.1:{target.redis_port}/0",
            "KAFKA_BOOTSTRAP_SERVERS": target.bootstrap,
            "KAFKA_EVENTS_TOPIC": target.topic,
            "KAFKA_DLQ_TOPIC": target.topic + ".dlq",
            "STREAMER_APP_ID": target.app_id,
            "STREAMER_DATA_DIR": str(data_dir),
            "STREAMER_WEB_PORT": str(port),
        }
    )
    return env


@dataclass
class Worker:
    """One `python -m streamer worker` child with its own port, data dir and log."""

    config: str
    target: Target
    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        """Spawn the process (output to worker.log in its data dir)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = worker_env(self.config, self.target, self.data_dir, self.port)
        with open(self.data_dir / "worker.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamer", "worker"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        """Process id (the worker must have been started)."""
        if self.proc is None:
            raise RuntimeError("worker not started")
        return self.proc.pid

    def check_alive(self) -> None:
        """Raise with the log tail if the process exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        """End of the worker's log (for failure messages)."""
        path = self.data_dir / "worker.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def rss(self) -> int:
        """Resident set size of the running process (VmRSS)."""
        return rss_bytes(self.pid)

    async def get(self, path: str) -> tuple[int, str]:
        """HTTP GET on the worker's port: (status, body), (0, "") while nothing answers."""
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp,
            ):
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0, ""

    async def processed(self) -> float:
        """Events the worker counted so far (0 while it is not serving)."""
        return await self.metric(PROCESSED)

    async def metric(self, name: str) -> float:
        """A sample's value from the worker's /metrics (0 while absent or not serving)."""
        _, text = await self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    @property
    def sinks(self) -> bool:
        """The configuration inserts into ClickHouse (the sink is on unless turned off)."""
        return CONFIGS[self.config].get("STREAMER_CLICKHOUSE_SINK", "true") != "false"

    async def wait_ready(self, timeout_s: float) -> None:
        """Until /readyz answers 200 (recovery done, partitions assigned)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            if (await self.get("/readyz"))[0] == 200:
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"worker not ready after {timeout_s}s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 60 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class MemoryTrack:
    """Peaks and last values of VmRSS, RssAnon and RssFile of worker processes, sampled by the caller.

    VmHWM is the kernel's own peak of VmRSS (between samples too); RssAnon and RssFile have no
    kernel peak, so theirs are the largest sampled values (one reading every 0.1 s).
    """

    def __init__(self) -> None:
        self.peak: dict[str, int] = {}
        self.last: dict[int, dict[str, int]] = {}

    def sample(self, pids: list[int]) -> None:
        """Read each process's status; peaks are of the sum over the processes."""
        for pid in pids:
            with contextlib.suppress(OSError):
                self.last[pid] = memory_status(pid)
        total = self.total()
        for key in ("rss", "anon", "file"):
            self.peak[key] = max(self.peak.get(key, 0), total.get(key, 0))
        self.peak["hwm"] = max([self.peak.get("hwm", 0)] + [m.get("hwm", 0) for m in self.last.values()])

    def total(self) -> dict[str, int]:
        """The last values summed over the processes."""
        out: dict[str, int] = {}
        for values in self.last.values():
            for key, value in values.items():
                out[key] = out.get(key, 0) + value
        return out

    def figures(self) -> dict[str, int]:
        """peak_rss (VmHWM of the largest process), peak_* (sampled VmRSS, RssAnon, RssFile of the
        processes together) and end_* (the last reading)."""
        end = self.total()
        out = {"peak_rss": self.peak.get("hwm", 0), "peak_rss_sampled": self.peak.get("rss", 0)}
        out.update({f"peak_{k}": self.peak.get(k, 0) for k in ("anon", "file")})
        out.update({f"end_{k}": end.get(k, 0) for k in ("rss", "anon", "file")})
        return out


async def wait_processed(
    workers: list[Worker], total: int, timeout_s: float, metric: str = PROCESSED
) -> None:
    """Until the workers together counted `total` events (or another counter reached it)."""
    deadline = time.monotonic() + timeout_s
    counted = 0.0
    while time.monotonic() < deadline:
        for w in workers:
            w.check_alive()
        counted = sum(await asyncio.gather(*(w.metric(metric) for w in workers)))
        if counted >= total:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"workers reached {counted:.0f} of {total} events ({metric}) in {timeout_s}s")


Samples = list[tuple[float, list[float]]]


async def sample_until(
    workers: list[Worker], total: int, timeout_s: float, on_first: Callable[[], object] | None = None
) -> Samples:
    """(time, per-worker counted) every 0.1 s until the workers counted `total` events."""
    samples: Samples = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for w in workers:
            w.check_alive()
        counts = list(await asyncio.gather(*(w.processed() for w in workers)))
        samples.append((time.perf_counter(), counts))
        if on_first is not None and sum(counts) > 0:
            on_first()
            on_first = None
        if sum(counts) >= total:
            return samples
        await asyncio.sleep(0.1)
    raise RuntimeError(f"workers counted {sum(samples[-1][1]):.0f} of {total} events in {timeout_s}s")


def steady_rate(samples: Samples) -> tuple[float, float]:
    """(events/s, drain s): summed rate while every worker makes progress (one: first progress to done)."""
    started = [i for i, (_, c) in enumerate(samples) if sum(c) > 0]
    if not started:
        return 0.0, 0.0
    first = started[0]
    drain_s = samples[-1][0] - samples[first - 1 if first else 0][0]
    both = [
        i
        for i in range(1, len(samples))
        if all(c > p for c, p in zip(samples[i][1], samples[i - 1][1], strict=True))
    ]
    if len(samples[0][1]) > 1 and len(both) >= 3:
        lo, hi = both[0] - 1, both[-1]
    else:
        lo, hi = max(0, first - 1), len(samples) - 1
    span = samples[hi][0] - samples[lo][0]
    return (sum(samples[hi][1]) - sum(samples[lo][1])) / span if span > 0 else 0.0, drain_s
