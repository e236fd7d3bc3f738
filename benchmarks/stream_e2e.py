"""Scenario 1: end-to-end worker throughput against tansu, beside a raw aiokafka consumer."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from benchmarks.common import Context, Plot, Row, ScenarioResult, Target, rss_bytes
from streamer.core.events import EVENT_TYPE_INDEX, Event
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.demo import generate
from streamer.demo.services import LocalService, free_port, start_redis, start_tansu
from streamer.kafka_admin import ensure_topics

WORKER_FILE = Path(__file__).resolve().parents[1] / "streamer" / "stream" / "worker.py"
PARTITIONS = 4
TOPK = 50
SINGLE_TARGET = 0.06
BATCH_TARGET = 0.4
SCALING_TARGET = 1.6


@dataclass
class Workload:
    """One pre-produced topic: its events (for the recomputation) and message layout."""

    name: str
    topic: str
    events: list[Event]
    batch: int
    messages: int = 0


@dataclass
class WorkerRun:
    """What the worker(s) reported while draining a topic."""

    rate: float
    drain_s: float
    rss_start: int = 0
    rss_end: int = 0
    exact: bool = False
    detail: str = ""
    samples: list[tuple[float, list[float]]] = field(default_factory=list)


def worker_available() -> bool:
    """The worker module of streamer/stream/ exists (it is written by a teammate)."""
    return WORKER_FILE.exists()


def run(ctx: Context) -> ScenarioResult:
    """Raw consumer vs one worker vs two workers, single events and 100-event batches."""
    res = ScenarioResult("stream", "End-to-end stream throughput (worker vs raw aiokafka consumer)")
    if not worker_available():
        res.status = "skipped: worker unavailable"
        return res
    redis, kafka = start_redis(), start_tansu()
    try:
        asyncio.run(_run(ctx, res, redis, kafka))
    finally:
        kafka.stop()
        redis.stop()
    return res


async def _run(ctx: Context, res: ScenarioResult, redis: LocalService, kafka: LocalService) -> None:
    bootstrap = f"127.0.0.1:{kafka.port}"
    now_ms = time.time_ns() // 1_000_000
    plot = Plot("stream_throughput", "End-to-end events/s", "", "events/s", kind="bar", logy=True)
    for name, count, batch in (
        ("single", ctx.size(3_000, 200_000), 1),
        ("batch100", ctx.size(20_000, 1_000_000), 100),
    ):
        ctx.step(f"{name}: producing {count:,} events")
        load = await _produce(bootstrap, name, count, batch, now_ms)
        ctx.step(f"{name}: raw aiokafka consumer")
        raw = await _raw_rate(bootstrap, load)
        # Interleaved one/two-worker runs (best of each in full mode) so load spikes hit both.
        ones: list[WorkerRun] = []
        twos: list[WorkerRun] = []
        for _ in range(ctx.size(1, 2)):
            ctx.step(f"{name}: one worker")
            ones.append(await _worker_run(ctx, redis, bootstrap, load, workers=1))
            if not ctx.smoke:
                ctx.step(f"{name}: two workers")
                twos.append(await _worker_run(ctx, redis, bootstrap, load, workers=2))
        one = best(ones)
        raw = max(raw, await _raw_rate(bootstrap, load))  # best of two, around the workers
        target = SINGLE_TARGET if batch == 1 else BATCH_TARGET
        res.add(
            Row(
                f"one worker, {name} ({count:,} events)",
                one.rate,
                "events/s",
                "raw aiokafka+orjson",
                raw,
                Target("ratio>=", target),
                note=f"best of {len(ones)}; RSS {one.rss_end / 2**20:.0f} MiB at end",
            )
        )
        _exact_row(res, f"one worker, {name}", one)
        plot.categories.append(name)
        plot.bars.setdefault("raw consumer", []).append(raw)
        plot.bars.setdefault("1 worker", []).append(one.rate)
        if ctx.smoke:
            continue
        two = best(twos)
        res.add(
            Row(
                f"two workers, {name}",
                two.rate,
                "events/s",
                "one worker",
                one.rate,
                Target("ratio>=", SCALING_TARGET) if batch == 1 else None,
                note=f"best of {len(twos)}; rate while both consume; drain {two.drain_s:.1f}s vs "
                f"{one.drain_s:.1f}s",
            )
        )
        _exact_row(res, f"two workers, {name}", two)
        plot.bars.setdefault("2 workers", []).append(two.rate)
        if batch == 100:
            _rss_row(ctx, res, one, load)
            await _profile_worker(ctx, res, redis, bootstrap, load)
    res.plots.append(plot)


def _previous_core_bytes(ctx: Context) -> float | None:
    """The memory scenario's figure from the last run, when it did not run in this one."""
    try:
        doc = orjson.loads((ctx.out_dir / "latest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    for scen in doc.get("scenarios", []):
        for row in scen.get("rows", []) if scen.get("name") == "memory" else []:
            if row.get("metric") == "bytes per in-window event (tracemalloc)":
                return float(row["value"])
    return None


async def _profile_worker(
    ctx: Context, res: ScenarioResult, redis: LocalService, bootstrap: str, load: Workload
) -> None:
    """A separate (unmeasured) run of one worker under py-spy: where its time goes."""
    if py_spy_binary() is None:
        res.notes.append("py-spy not installed: no worker profile.")
        return
    ctx.step(f"{load.name}: one worker under py-spy")
    out = ctx.out_dir / "profiles" / f"worker_{load.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    await _worker_run(ctx, redis, bootstrap, load, workers=1, profile=out)
    raw = out.with_suffix(".raw")
    if raw.exists():
        out.write_text(summarize_py_spy(raw.read_text()) + "\n")
        raw.unlink()
        res.notes.append(f"Worker profile (py-spy, {load.name}): `profiles/{out.name}`.")


def best(runs: list[WorkerRun]) -> WorkerRun:
    """The fastest run, exact only if every run was exact."""
    top = max(runs, key=lambda r: r.rate)
    wrong = [r.detail for r in runs if not r.exact]
    top.exact = not wrong
    top.detail = wrong[0] if wrong else top.detail
    return top


def _exact_row(res: ScenarioResult, label: str, run: WorkerRun) -> None:
    res.add(
        Row(
            f"{label}: published top-{TOPK} == recomputation",
            float(run.exact),
            "bool",
            target=Target("value>=", 1),
            note=run.detail,
        )
    )


def _rss_row(ctx: Context, res: ScenarioResult, one: WorkerRun, load: Workload) -> None:
    per_event = (one.rss_end - one.rss_start) / max(1, len(load.events))
    core = ctx.facts.get("core_bytes_per_event") or _previous_core_bytes(ctx)
    res.add(
        Row(
            "worker RSS growth per in-window event",
            per_event,
            "B",
            "core state (tracemalloc)" if core else "",
            core,
            note=f"{len(load.events):,} events; growth from first progress sample to the end",
        )
    )


def partition_of(post_id: int) -> int:
    """Kafka's default partitioner for the contract's key."""
    return int(murmur2(str(post_id).encode()) & 0x7FFFFFFF) % PARTITIONS


async def _produce(bootstrap: str, name: str, count: int, batch: int, now_ms: int) -> Workload:
    """Pre-produce a topic; batches group events of one partition, keyed by their first post."""
    topic = f"bench.{name}.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    events = list(generate.events(count, max(1000, count // 20), 5000, now_ms, 10 * 60_000, seed=count))
    load = Workload(name, topic, events, batch)
    by_part: dict[int, list[Event]] = {}
    for e in events:
        by_part.setdefault(partition_of(e.post_id), []).append(e)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=1 << 20, max_request_size=8 << 20
    )
    await producer.start()
    try:
        futures = []
        for part, evs in by_part.items():
            for start in range(0, len(evs), batch):
                chunk = evs[start : start + batch]
                value = orjson.dumps(chunk[0].to_dict() if batch == 1 else [e.to_dict() for e in chunk])
                futures.append(
                    await producer.send(topic, value, key=str(chunk[0].post_id).encode(), partition=part)
                )
        await asyncio.gather(*futures)
        load.messages = len(futures)
    finally:
        await producer.stop()
    return load


async def _raw_rate(bootstrap: str, load: Workload, min_s: float = 1.0) -> float:
    """Baseline: getmany + orjson.loads + a dict count per post, no group, all partitions.

    Connects and fetches once untimed, then re-reads the whole topic until at least min_s passed.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(load.topic, p) for p in range(PARTITIONS)])
        while not await consumer.getmany(timeout_ms=500, max_records=1):
            pass
        seen, began = 0, time.perf_counter()
        while seen == 0 or time.perf_counter() - began < min_s:
            await consumer.seek_to_beginning()
            seen += await _drain(consumer, len(load.events))
        return seen / (time.perf_counter() - began)
    finally:
        await consumer.stop()


async def _drain(consumer: AIOKafkaConsumer, total: int) -> int:
    counts: dict[int, int] = {}
    seen = 0
    while seen < total:
        batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
        for records in batches.values():
            for rec in records:
                doc = orjson.loads(rec.value)
                for ev in doc if isinstance(doc, list) else (doc,):
                    counts[ev["post_id"]] = counts.get(ev["post_id"], 0) + 1
                    seen += 1
    return seen


def worker_env(
    redis: LocalService, bootstrap: str, load: Workload, app_id: str, data_dir: Path, port: int
) -> dict[str, str]:
    """Contract variables for one worker process (memory tables, no ClickHouse sink)."""
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": f"redis://127.0.0.1:{redis.port}/0",
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_EVENTS_TOPIC": load.topic,
            "KAFKA_DLQ_TOPIC": load.topic + ".dlq",
            "STREAMER_APP_ID": app_id,
            "STREAMER_DATA_DIR": str(data_dir),
            "STREAMER_WEB_PORT": str(port),
            "STREAMER_TABLE_STORE": "memory",
            "STREAMER_CLICKHOUSE_SINK": "false",
            "STREAMER_TOPIC_PARTITIONS": str(PARTITIONS),
            "JOB_TRENDING_INTERVAL_SEC": "1",
            "JOB_SUGGESTION_INTERVAL_SEC": "3600",
            "JOB_RECONCILE_INTERVAL_SEC": "3600",
            # Fast tansu group joins (DESIGN.md); ignored if the worker has no such settings.
            "STREAMER_REBALANCE_TIMEOUT_SEC": "3",
            "STREAMER_SESSION_TIMEOUT_SEC": "6",
            "STREAMER_HEARTBEAT_INTERVAL_SEC": "1",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


def _spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "streamer", "worker"],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def processed(port: int) -> float | None:
    """streamer_events_processed_total from a worker's /metrics (None while it is not serving)."""
    import aiohttp

    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics", timeout=aiohttp.ClientTimeout(total=2)) as resp,
        ):
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None
    for line in text.splitlines():
        if line.startswith("streamer_events_processed_total "):
            return float(line.split()[1])
    return 0.0


async def _worker_run(
    ctx: Context,
    redis: LocalService,
    bootstrap: str,
    load: Workload,
    workers: int,
    profile: Path | None = None,
) -> WorkerRun:
    """Start worker(s) on a fresh group, sample their counters until every event is counted."""
    import redis as sync_redis

    sync_redis.Redis(port=redis.port).flushall()
    app_id = f"bench-{load.name}-{workers}w-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-worker-", dir=ctx.work_dir))
    ports = [free_port() for _ in range(workers)]
    procs = [
        _spawn_worker(worker_env(redis, bootstrap, load, app_id, tmp / f"w{i}", port), tmp / f"w{i}.log")
        for i, port in enumerate(ports)
    ]
    spy: list[subprocess.Popen[bytes]] = []
    on_progress = (lambda: spy.append(_start_py_spy(procs[0].pid, profile))) if profile else None
    try:
        run = await _sample(procs, ports, len(load.events), ctx.size(90, 600), on_progress)
        for proc in spy:
            proc.wait(30)
        done_ms = time.time_ns() // 1_000_000
        run.exact, run.detail = await _verify(redis, load, done_ms)
        return run
    except Exception:
        logs = " | ".join((tmp / f"w{i}.log").read_text(errors="replace")[-800:] for i in range(workers))
        raise RuntimeError(f"worker run failed; log tails: {logs}") from None
    finally:
        for proc in procs:
            _stop(proc)


async def _sample(
    procs: list[subprocess.Popen[bytes]],
    ports: list[int],
    total: int,
    timeout_s: float,
    on_progress: Callable[[], object] | None = None,
) -> WorkerRun:
    samples: list[tuple[float, list[float]]] = []
    rss_start = 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with code {proc.returncode}")
        counts = [c or 0.0 for c in await asyncio.gather(*(processed(p) for p in ports))]
        now = time.perf_counter()
        samples.append((now, counts))
        if not rss_start and sum(counts) > 0:
            rss_start = sum(rss_bytes(p.pid) for p in procs)
            if on_progress is not None:
                on_progress()
        if sum(counts) >= total:
            break
        await asyncio.sleep(0.1)
    else:
        raise RuntimeError(f"workers counted {sum(samples[-1][1]):.0f} of {total} events in {timeout_s}s")
    rate, drain_s = steady_rate(samples)
    return WorkerRun(rate, drain_s, rss_start, sum(rss_bytes(p.pid) for p in procs), samples=samples)


def steady_rate(samples: list[tuple[float, list[float]]]) -> tuple[float, float]:
    """Summed rate while every worker makes progress (one worker: first progress to done)."""
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


async def _verify(redis: LocalService, load: Workload, done_ms: int) -> tuple[bool, str]:
    """Wait for a publish after the drain; compare it with a recomputation over its window."""
    from redis.asyncio import Redis

    client = Redis(port=redis.port)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            raw, meta_raw = await client.mget(trending_key(1), trending_meta_key(1))
            meta = orjson.loads(meta_raw) if meta_raw else {}
            if raw is not None and int(meta.get("generated_at_ms", 0)) > done_ms:
                expected = recompute(load.events, int(meta["window_start_ms"]), int(meta["window_end_ms"]))
                got = decode_trending(raw)
                same = got == expected
                detail = (
                    "exact"
                    if same
                    else f"published {len(got)} posts, first diff at rank {_diff(got, expected)}"
                )
                return same, detail + f"; partitions {meta.get('partitions')}"
            await asyncio.sleep(0.2)
        return False, "no publish after the drain within 30 s"
    finally:
        await client.aclose()


def recompute(events: list[Event], start_ms: int, end_ms: int) -> list[PostCounts]:
    """The contract's top-50 from the produced events (ids deduplicated)."""
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for e in events:
        if start_ms <= e.ts_ms < end_ms and e.event_id not in seen:
            seen.add(e.event_id)
            counts.setdefault(e.post_id, [0, 0, 0, 0])[EVENT_TYPE_INDEX[e.event_type]] += 1
    return rank_posts([PostCounts(p, *c) for p, c in counts.items()], TOPK)


def _diff(a: list[PostCounts], b: list[PostCounts]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i + 1
    return min(len(a), len(b)) + 1


PY_SPY_SECONDS = 6


def py_spy_binary() -> str | None:
    """py-spy from the venv or PATH (optional: the profile is skipped without it)."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _start_py_spy(pid: int, out: Path | None) -> subprocess.Popen[bytes]:
    binary = py_spy_binary()
    if out is None or binary is None:
        raise RuntimeError("py-spy profile requested without py-spy or an output path")
    cmd = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(PY_SPY_SECONDS),
        "--rate",
        "250",
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out.with_suffix(".raw")),
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_py_spy(raw: str, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_function(frame) for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            incl[frame] = incl.get(frame, 0) + count
    lines = [
        f"py-spy, {total} samples over {PY_SPY_SECONDS}s of one worker draining 100-event batches",
        "",
        "self %  function (file)",
    ]
    lines += [_share(f, n, total) for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]]
    lines += ["", "inclusive %  function (file)"]
    lines += [_share(f, n, total) for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]]
    return "\n".join(lines)


def _function(frame: str) -> str:
    """`name (path/file.py:123)` -> `name (path/file.py)`: self time per function, not per line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit(':', 1)[0]})" if where else name


def _share(function: str, samples: int, total: int) -> str:
    return f"{100 * samples / max(1, total):5.1f}  {function}"
