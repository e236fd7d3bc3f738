"""Sustained whole-process cost: `python -m benchmarks sustained [--events N] [--form F] [...]`.

One worker drains a pre-produced wide topic with the given configuration (default: nothing set
beyond connections, so the embedded ClickHouse sink is on). Figures, each beside a raw aiokafka
consumer (getmany, json.loads, a dict count per post) of the same topic in the same run:
counting rate between 10 % and 90 % of the events counted; sustained rate from the first event
counted or inserted until every event is counted AND inserted by the sink
(streamer_sink_batch_size_sum; the sink reads on its own and may insert before the first count);
worker CPU per event over that span (/proc/PID/stat: user+system of all its threads, embedded
ClickHouse included); peak RSS (VmHWM) and, sampled with the counts, the peak and final
RssAnon (what the worker holds: heaps, buffers, caches) and RssFile (library text and mapped
files, which the kernel can drop and read again) of /proc/PID/status. Results are appended
to --out as JSON lines.

`--workers 2` also starts two workers together (same app id, own port and data dir, so each
embeds its own ClickHouse: a whole copy, which its sink fills with every event in a group of
its own) on the same topic after the one worker, and two raw consumers side by side, each
assigned half the partitions: scaling efficiency E = (two workers / one) / (two raw consumers
/ one); CPU per event of the two = both workers' CPU over the span from the first event either
counted or inserted until both together counted every event and each one's sink inserted
every event.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import append_result, print_threads
from benchmarks.stream_cases import unique
from benchmarks.stream_profile import Recorder, summarize
from benchmarks.stream_worker import CONFIGS, MemoryTrack, Target, Worker
from benchmarks.stream_workloads import PARTITIONS, produce
from benchmarks.sustained_workload import events_by_partition, wide_messages
from streamer.demo.services import start_redis, start_tansu
from streamer.kafka.admin import ensure_topics

TICK_S = 1 / os.sysconf("SC_CLK_TCK")
SAMPLE_S = 0.1
RAW_START_S = 6.0  # raw consumers side by side start reading together, this long after launch
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "sustained.jsonl"
Sample = tuple[float, float, float, float, float]  # perf time, cpu s, counted, sunk, broker cpu s


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks sustained", description=__doc__)
    p.add_argument("--events", type=int, default=2_000_000, help="events in the topic")
    p.add_argument("--form", choices=("array", "single"), default="array",
                   help="100-event arrays or one event per message")
    p.add_argument("--ids", choices=("hex", "uuid"), default="hex", help="32-hex event ids or UUID4s")
    p.add_argument("--config", choices=("default", "sink-off"), default="default", help="worker settings")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a worker setting beyond the configuration (repeatable)")
    p.add_argument("--workers", type=int, choices=(1, 2), default=1,
                   help="2: also two workers together against two raw consumers (scaling efficiency)")
    p.add_argument("--worker-src", type=Path, help="run the worker from this source tree (a before/after)")
    p.add_argument("--profile", type=Path, help="also record the worker with py-spy; summary here")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines file the result is appended to")
    p.add_argument("--logs", type=Path, help="keep each worker's log in this directory (LOG_LEVEL via --set)")
    return p.parse_args(argv)


def cpu_s(pid: int) -> float:
    """User + system seconds of every thread of a process."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (the main loop, ClickHouse's pools, ...), summed by name."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            text = (task / "stat").read_text()
            name = text.split("(", 1)[1].rsplit(")", 1)[0]
            fields = text.rsplit(")", 1)[1].split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) * TICK_S
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def metric(text: str, name: str) -> float:
    """A sample's value from the Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def sample_worker(
    workers: list[Worker], total: int, sink: bool, timeout_s: float, on_first: Callable[[], object],
    series: list[list[float]] | None = None, memory: MemoryTrack | None = None,
    broker_pid: int | None = None,
) -> list[Sample]:
    """(time, cpu, counted, sunk, broker cpu) over the workers every 0.1 s until all is counted (and
    sunk); their VmRSS, RssAnon and RssFile into `memory` at each sample."""
    samples: list[Sample] = []
    first = True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for worker in workers:
            worker.check_alive()
        texts = [text for _, text in await asyncio.gather(*(w.get("/metrics") for w in workers))]
        counted = sum(metric(text, "streamer_events_processed_total") for text in texts)
        # Each worker's embedded engine is a whole copy: done when the least filled one is.
        sunk = min(metric(text, "streamer_sink_batch_size_sum") for text in texts)
        if series is not None:  # time, then counted and sunk of each worker
            names = ("streamer_events_processed_total", "streamer_sink_batch_size_sum")
            series.append([time.perf_counter(), *(metric(text, n) for text in texts for n in names)])
        broker_s = cpu_s(broker_pid) if broker_pid is not None else 0.0
        samples.append((time.perf_counter(), sum(cpu_s(w.pid) for w in workers), counted, sunk, broker_s))
        if memory is not None:
            memory.sample([w.pid for w in workers])
        if first and counted > 0:
            first = False
            on_first()
        if counted >= total and (not sink or sunk >= total):
            return samples
        await asyncio.sleep(SAMPLE_S)
    last = samples[-1] if samples else (0, 0, 0, 0, 0)
    raise RuntimeError(f"after {timeout_s}s: counted {last[2]:.0f}, sunk {last[3]:.0f} of {total}")


def crossing(samples: list[Sample], level: float) -> float:
    """Time the counted total crossed `level` (linear between the two samples around it)."""
    for (t0, _, n0, _, _), (t1, _, n1, _, _) in itertools.pairwise(samples):
        if n0 < level <= n1:
            return t0 + (t1 - t0) * (level - n0) / (n1 - n0)
    return samples[-1][0]


def worker_figures(samples: list[Sample], total: int) -> dict[str, float]:
    """Counting rate 10-90 %, sustained rate, CPU per event (and the broker's, and cores busy)."""
    first = next(i for i, s in enumerate(samples) if s[2] > 0 or s[3] > 0)  # counted or sunk
    t0, c0, _, _, b0 = samples[max(0, first - 1)]
    t1, c1, counted, sunk, b1 = samples[-1]
    lo, hi = crossing(samples, 0.1 * total), crossing(samples, 0.9 * total)
    return {
        "counting_10_90": 0.8 * total / (hi - lo) if hi > lo else 0.0,
        "sustained": total / (t1 - t0),
        "cpu_us": (c1 - c0) / total * 1e6,
        "cpu_us_life": c1 / total * 1e6,  # the workers' whole lives until done, start-up included
        "broker_cpu_us": (b1 - b0) / total * 1e6,
        "cores_busy": (c1 - c0 + b1 - b0) / (t1 - t0),  # workers and broker over the span
        "counted": counted,
        "sunk": sunk,
        "seconds": t1 - t0,
    }


def raw(bootstrap: str, topic: str, total: int, broker_pid: int | None = None) -> dict[str, float]:
    """One raw consumer drain of every partition in its own process (its CPU is only its own)."""
    return raw_side_by_side(bootstrap, topic, [(list(range(PARTITIONS)), total)], broker_pid)


def halves(per_partition: dict[int, int]) -> list[tuple[list[int], int]]:
    """Two shares, each half the partitions with the events they hold."""
    groups = [list(range(PARTITIONS))[i::2] for i in range(2)]
    return [(g, sum(per_partition.get(p, 0) for p in g)) for g in groups]


def raw_side_by_side(
    bootstrap: str, topic: str, shares: list[tuple[list[int], int]], broker_pid: int | None = None
) -> dict[str, float]:
    """Raw consumers at once, one process per (partitions, events) share.

    Rate: the events after each one's first fetch over the span from the first one's start to
    the last one's end (CLOCK_MONOTONIC; each connects, then waits for a common start); CPU per
    event: their CPU summed over those events; the broker's CPU over the whole run of the
    consumers (connect included: an upper bound) per event.
    """
    broker_before_s = cpu_s(broker_pid) if broker_pid is not None else 0.0
    start_at = f"{time.monotonic() + (RAW_START_S if len(shares) > 1 else 0.0):.3f}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.sustained_workload", bootstrap, topic, str(events),
         ",".join(map(str, parts)), start_at],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for parts, events in shares]
    outs = [proc.communicate(timeout=900) for proc in procs]
    if any(proc.returncode for proc in procs):
        raise RuntimeError(f"raw consumer failed: {' '.join(err[-1500:] for _, err in outs)}")
    figs: list[dict[str, float]] = [json.loads(out) for out, _ in outs]
    broker_s = cpu_s(broker_pid) - broker_before_s if broker_pid is not None else 0.0
    events = sum(n for _, n in shares) - sum(f["n0"] for f in figs)
    if len(figs) == 1:
        return {**figs[0], "broker_cpu_us": broker_s / events * 1e6}
    span_s = max(f["t1"] for f in figs) - min(f["t0"] for f in figs)
    return {"rate": events / max(span_s, 1e-9), "cpu_us": sum(f["cpu_s"] for f in figs) / events * 1e6,
            "broker_cpu_us": broker_s / events * 1e6}


def start_worker(args: argparse.Namespace, target: Target, data_dir: Path) -> Worker:
    """A fresh worker process (extra settings, another source tree when asked)."""
    worker_src: Path | None = args.worker_src
    saved, cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    if worker_src is not None:  # `python -m` puts the working directory first on sys.path
        os.environ["PYTHONPATH"] = str(worker_src.resolve())
        os.chdir(worker_src)
    extra = dict(item.split("=", 1) for item in args.set)
    CONFIGS[f"{args.config}+"] = {**CONFIGS[args.config], **extra}
    try:
        return Worker(f"{args.config}+", target, data_dir).start()
    finally:
        os.chdir(cwd)
        if worker_src is not None:
            os.environ.pop("PYTHONPATH")
            if saved is not None:
                os.environ["PYTHONPATH"] = saved


async def drain(
    args: argparse.Namespace, target: Target, dirs: list[Path], on_first: Callable[[list[Worker]], object]
) -> tuple[list[Sample], dict[str, int], dict[str, float], list[list[float]]]:
    """Workers started together drain the topic: samples, memory (peak_rss = the largest VmHWM,
    peak/end RssAnon and RssFile), CPU by thread, each one's series."""
    workers = [start_worker(args, target, d) for d in dirs]
    series: list[list[float]] = []
    memory = MemoryTrack()
    try:
        samples = await sample_worker(workers, args.events, args.config == "default", 900,
                                      lambda: on_first(workers), series, memory, args.broker_pid)
        threads: dict[str, float] = {}
        for w in workers:
            for name, used_s in thread_cpu_s(w.pid).items():
                threads[name] = threads.get(name, 0.0) + used_s
        memory.sample([w.pid for w in workers])  # VmHWM at the very end
        return samples, memory.figures(), threads, series
    finally:
        for w in workers:
            w.stop()
            if args.logs is not None:
                args.logs.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(w.data_dir / "worker.log", args.logs / f"{w.data_dir.name}.log")


def first_counted(series: list[list[float]], t0: float) -> list[float]:
    """Seconds from the span's start to each worker's first counted event (start-up skew)."""
    return [round(next((row[0] for row in series if row[1 + 2 * i] > 0), series[-1][0]) - t0, 2)
            for i in range((len(series[0]) - 1) // 2)]


def two_figures(
    samples: list[Sample], total: int, one: dict[str, Any], raw_two: dict[str, float]
) -> dict[str, Any]:
    """The two workers' figures beside one's: scaling efficiency E and the CPU ratio."""
    two = worker_figures(samples, total)
    out: dict[str, Any] = {f"two_{k}": v for k, v in two.items()}
    out.update({"raw_two_rate": raw_two["rate"], "raw_two_cpu_us": raw_two["cpu_us"],
                "raw_two_broker_cpu_us": raw_two["broker_cpu_us"]})
    out["workers_ratio"] = two["sustained"] / one["sustained"]
    out["raw_ratio"] = raw_two["rate"] / one["raw_rate"]
    out["efficiency"] = out["workers_ratio"] / out["raw_ratio"]
    out["cpu_two_vs_one"] = two["cpu_us"] / one["cpu_us"]
    return out


async def measure(args: argparse.Namespace, bootstrap: str, redis_port: int, work: Path) -> dict[str, Any]:
    """Produce, raw drains, worker drain (then two workers), raw drains again (the better ones kept)."""
    topic = unique("bench.sustained")
    await ensure_topics(bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    msgs = wide_messages(args.events, args.form, args.ids, time.time_ns() // 1_000_000)
    messages, shares = len(msgs), halves(events_by_partition(msgs))
    await produce(bootstrap, topic, msgs)
    del msgs
    raws = [raw(bootstrap, topic, args.events, args.broker_pid)]
    raws_two = [raw_side_by_side(bootstrap, topic, shares, args.broker_pid)] if args.workers == 2 else []
    recorders: list[Recorder] = []

    def record(workers: list[Worker]) -> None:
        if args.profile is not None:
            recorders.append(Recorder(workers[0].pid, work / "profile.raw"))

    samples, memory, threads, _ = await drain(args, Target(redis_port, bootstrap, topic, unique("bench")),
                                              [work / "worker"], record)
    for rec in recorders:
        title = f"one worker ({args.config} {' '.join(args.set)}), wide {args.form}, {args.ids} ids"
        args.profile.parent.mkdir(parents=True, exist_ok=True)
        args.profile.write_text(summarize(rec.stop(), title) + "\n")
    if args.workers == 2:
        two_target = Target(redis_port, bootstrap, topic, unique("bench"))
        two_samples, two_memory, _, series = await drain(args, two_target, [work / "two-a", work / "two-b"],
                                                           lambda _: None)
        raws_two.append(raw_side_by_side(bootstrap, topic, shares, args.broker_pid))
    raws.append(raw(bootstrap, topic, args.events, args.broker_pid))
    raw_best = max(raws, key=lambda r: r["rate"])
    out: dict[str, Any] = {"events": args.events, "messages": messages, "form": args.form,
                           "ids": args.ids, "config": args.config, "set": args.set,
                           "workers": args.workers, "threads_cpu_s": threads}
    out.update(memory)
    out.update(worker_figures(samples, args.events))
    out.update({f"raw_{k}": raw_best[k] for k in ("rate", "rate_10_90", "cpu_us", "broker_cpu_us")})
    out["sustained_ratio"] = out["sustained"] / out["raw_rate"]
    out["cpu_ratio"] = out["raw_cpu_us"] / out["cpu_us"]
    done = [(out["counted"], out["sunk"])]
    if args.workers == 2:
        out.update(two_figures(two_samples, args.events, out, max(raws_two, key=lambda r: r["rate"])))
        t0 = next(row[0] for row in series if sum(row[1:]) > 0)
        out["two_peak_rss"], out["two_counted_each"] = two_memory["peak_rss"], [series[-1][1], series[-1][3]]
        out["two_peak_anon"] = two_memory["peak_anon"]
        out["two_series"] = [[round(row[0] - t0, 2), *row[1:]] for row in series[::5] + series[-1:]]
        out["two_first_counted_s"] = first_counted(series, t0)
        done.append((out["two_counted"], out["two_sunk"]))
    sink = args.config == "default"
    out["exact"] = all(c == args.events and (not sink or n == args.events) for c, n in done)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """A private tansu and Redis for the run."""
    redis, kafka = start_redis(), start_tansu()
    try:
        with tempfile.TemporaryDirectory(prefix="streamer-sustained-") as tmp:
            args.broker_pid = kafka.proc.pid if kafka.proc is not None else None
            return await measure(args, f"127.0.0.1:{kafka.port}", redis.port, Path(tmp))
    finally:
        kafka.stop()
        redis.stop()


def broker_part(broker_us: float, raw_broker_us: float, raw_name: str, cores_busy: float) -> str:
    """The broker's CPU per event beside the raw read's, and the cores busy over the span."""
    return (f"broker CPU {broker_us:.2f} us/event ({raw_name} {raw_broker_us:.2f}), "
            f"cores busy (worker(s) + broker) {cores_busy:.2f}")


def line(r: dict[str, Any]) -> str:
    """One human line of a result."""
    return (f"{r['form']} {r['ids']} {r['config']} {r['events']:,} events: counting(10-90%) "
            f"{r['counting_10_90']:,.0f}/s, sustained {r['sustained']:,.0f}/s = "
            f"{r['sustained_ratio']:.2f}x raw {r['raw_rate']:,.0f}/s; "
            f"CPU {r['cpu_us']:.2f} us/event vs raw {r['raw_cpu_us']:.2f} "
            f"(ratio {r['cpu_ratio']:.2f}); peak RSS {r['peak_rss'] / 2**20:.0f} MiB "
            f"(anon {r['peak_anon'] / 2**20:.0f}, file {r['peak_file'] / 2**20:.0f}), at the end "
            f"{r['end_rss'] / 2**20:.0f} MiB (anon {r['end_anon'] / 2**20:.0f}, "
            f"file {r['end_file'] / 2**20:.0f}); "
            f"counted {r['counted']:,.0f} sunk {r['sunk']:,.0f} exact={r['exact']}; "
            + broker_part(r["broker_cpu_us"], r["raw_broker_cpu_us"], "raw's", r["cores_busy"]))


def two_line(r: dict[str, Any]) -> str:
    """One human line of the two-worker figures."""
    return (f"two workers: sustained {r['two_sustained']:,.0f}/s = {r['workers_ratio']:.2f}x one; "
            f"two raw consumers (half the partitions each) {r['raw_two_rate']:,.0f}/s = "
            f"{r['raw_ratio']:.2f}x one; efficiency E {r['efficiency']:.2f}; CPU {r['two_cpu_us']:.2f} "
            f"us/event = {r['cpu_two_vs_one']:.2f}x one; counted {r['two_counted']:,.0f} "
            f"({' + '.join(f'{n:,.0f}' for n in r['two_counted_each'])}) "
            f"sunk by each {r['two_sunk']:,.0f}; first counted at "
            f"{' / '.join(f'{t:.1f}' for t in r['two_first_counted_s'])} s; "
            + broker_part(r["two_broker_cpu_us"], r["raw_two_broker_cpu_us"], "two raw consumers'",
                          r["two_cores_busy"]))


def main(argv: Sequence[str] | None = None) -> int:
    """Run once, append the JSON line to --out, print the summary; exit 1 unless exact."""
    args = parse_args(argv)
    result = asyncio.run(run(args))
    append_result(args.out, result, "sustained", argv or sys.argv[1:], args.worker_src)
    print(line(result))
    if result["workers"] == 2:
        print(two_line(result))
    print_threads(result)
    return 0 if result["exact"] else 1
