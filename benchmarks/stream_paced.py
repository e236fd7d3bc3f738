"""Paced whole-process cost: `python -m benchmarks paced --form F --rate EVENTS_PER_S --seconds S [...]`.

Input below the worker's capacity, where deployments mostly run (`sustained` drains a backlog
instead). One worker starts on an empty topic; once it is ready, a warm-up of WARMUP_S at the
same rate (not measured) shows it counting and its sink inserting. Then this process produces
the wide workload (100-event arrays or single-event messages, ts over the last 40 minutes so
every event stays in the window) at the given event rate for the given seconds, each message
handed over when due every --slice-ms (10 ms), each partition's messages spread evenly over the
run. The span runs from the start of production until every event is counted AND inserted by
the sink (when it is on). Figures: worker CPU per event over the span (/proc/PID/stat,
user+system of all its threads; the producer's CPU is this process's, not the worker's) and
its share of a core; the share of events the sink took from the stream
(streamer_sink_tapped_events_total over the events); the lag (largest and mean gap between produced
and counted, and produced and inserted, over the 0.1 s samples; seconds from the last
produced message until all was counted, and until all was inserted); peak RSS (VmHWM) and
sampled RssAnon / RssFile; exactness. Afterwards a raw aiokafka consumer drains the same topic
in its own process: its CPU per event is the baseline of the ratio. Results are appended to
--out as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from benchmarks.common import append_result, print_threads
from benchmarks.stream_cases import unique
from benchmarks.stream_sustained import cpu_s, metric, raw, start_worker, thread_cpu_s
from benchmarks.stream_worker import PROCESSED, SUNK, MemoryTrack, Target, Worker
from benchmarks.stream_workloads import PARTITIONS, Message
from benchmarks.sustained_workload import wide_messages
from streamer.demo.services import start_redis, start_tansu
from streamer.kafka.admin import ensure_topics

TAPPED = "streamer_sink_tapped_events_total"
SLICE_S = 0.01  # the producer hands over what is due this often
SAMPLE_S = 0.1
WARMUP_S = 3.0  # at the paced rate, before the measured span
KEEP_UP_S = 2.0  # keeps up: the count never more than this much input behind the producer
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "paced.jsonl"
# time, worker cpu s, produced, counted, sunk, taken from the stream, broker cpu s
Row = tuple[float, float, float, float, float, float, float]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks paced", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--form", choices=("array", "single"), default="array",
                   help="100-event arrays or one event per message")
    p.add_argument("--rate", type=float, default=30_000, help="events per second produced")
    p.add_argument("--seconds", type=float, default=40.0, help="how long the paced input lasts")
    p.add_argument("--slice-ms", type=float, default=SLICE_S * 1000,
                   help="the producer hands over what is due this often")
    p.add_argument("--ids", choices=("hex", "uuid"), default="hex", help="32-hex event ids or UUID4s")
    p.add_argument("--config", choices=("default", "sink-off"), default="default", help="worker settings")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="a worker setting beyond the configuration (repeatable)")
    p.add_argument("--worker-src", type=Path, help="run the worker from this source tree (a before/after)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON lines file the result is appended to")
    return p.parse_args(argv)


def message_events(value: bytes) -> int:
    """Events in one wide message (an array or a single event)."""
    return value.count(b'"event_id"')


def interleave(msgs: list[Message]) -> list[Message]:
    """Each partition's messages spread evenly over the whole sequence, in order within it."""
    by_part: dict[int, list[Message]] = {}
    for msg in msgs:
        by_part.setdefault(msg[0], []).append(msg)
    keyed = [((i + 0.5) / len(ms), part, msg) for part, ms in by_part.items() for i, msg in enumerate(ms)]
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [msg for _, _, msg in keyed]


def due_messages(ends: Sequence[int], rate_per_s: float, elapsed_s: float) -> int:
    """How many messages are due `elapsed_s` into the run: those whose events all fit in
    rate x elapsed (`ends`: events up to and including each message, ascending)."""
    return bisect.bisect_right(ends, rate_per_s * elapsed_s)


def split_warmup(msgs: list[Message], warm_events: float) -> tuple[list[Message], list[Message]]:
    """The first messages holding at least `warm_events` events, and the rest."""
    ends = list(itertools.accumulate(message_events(v) for _, _, v in msgs))
    cut = min(len(msgs), bisect.bisect_left(ends, warm_events) + 1) if warm_events > 0 else 0
    return msgs[:cut], msgs[cut:]


@dataclass
class Progress:
    """What the paced producer handed over so far (read by the sampler)."""

    produced: int = 0  # events, the warm-up's included
    started: float = 0.0  # perf_counter when pacing began
    last_sent: float = 0.0  # perf_counter when the last message was handed over
    done: bool = False


async def produce_paced(
    producer: AIOKafkaProducer, topic: str, msgs: list[Message], rate_per_s: float, progress: Progress,
    slice_s: float = SLICE_S,
) -> None:
    """Hand each message over when due (checked every `slice_s`); wait for the broker's acks."""
    ends = list(itertools.accumulate(message_events(v) for _, _, v in msgs))
    base, sent, pending = progress.produced, 0, []
    progress.done, progress.started = False, time.perf_counter()
    while sent < len(msgs):
        due = due_messages(ends, rate_per_s, time.perf_counter() - progress.started)
        for part, key, value in msgs[sent:due]:
            pending.append(await producer.send(topic, value, key=key, partition=part))
        if due > sent:
            sent, progress.produced, progress.last_sent = due, base + ends[due - 1], time.perf_counter()
        if len(pending) >= 5_000:
            await asyncio.gather(*pending)
            pending.clear()
        await asyncio.sleep(slice_s)
    await asyncio.gather(*pending)
    progress.done = True


async def sample_row(worker: Worker, produced: int, broker_pid: int | None) -> Row:
    """One sample: time, worker CPU, events produced (read before the worker's counts, so the
    gap is not overstated), counted, inserted, taken from the stream, broker CPU."""
    worker.check_alive()
    _, text = await worker.get("/metrics")
    broker_s = cpu_s(broker_pid) if broker_pid is not None else 0.0
    return (time.perf_counter(), cpu_s(worker.pid), float(produced), metric(text, PROCESSED),
            metric(text, SUNK), metric(text, TAPPED), broker_s)


async def sample_paced(
    worker: Worker, progress: Progress, total: int, timeout_s: float,
    memory: MemoryTrack | None = None, broker_pid: int | None = None,
) -> list[Row]:
    """A row every SAMPLE_S until the producer is done and the worker counted (and its sink
    inserted) `total` events; memory sampled with each row."""
    rows: list[Row] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows.append(await sample_row(worker, progress.produced, broker_pid))
        if memory is not None:
            memory.sample([worker.pid])
        counted, sunk = rows[-1][3], rows[-1][4]
        if progress.done and counted >= total and (not worker.sinks or sunk >= total):
            return rows
        await asyncio.sleep(SAMPLE_S)
    last = rows[-1] if rows else (0.0,) * 7
    raise RuntimeError(f"after {timeout_s}s: produced {last[2]:.0f}, counted {last[3]:.0f}, "
                       f"sunk {last[4]:.0f} of {total}")


def lag_figures(rows: list[Row], rate_per_s: float, sink: bool) -> dict[str, float]:
    """Largest and mean gap between produced and counted (and inserted), in events and in seconds
    of input: the mean shows how long a fetch round waits, the largest the worst moment."""
    out: dict[str, float] = {}
    for name, col in (("count", 3), ("sink", 4)):
        gaps = [max(0.0, r[2] - r[col]) for r in rows] if sink or name == "count" else [0.0]
        most, mean = max(gaps), sum(gaps) / len(gaps)
        out[f"max_{name}_lag"], out[f"mean_{name}_lag"] = most, mean
        out[f"max_{name}_lag_s"], out[f"mean_{name}_lag_s"] = most / rate_per_s, mean / rate_per_s
    return out


def paced_figures(
    rows: list[Row], progress: Progress, events: int, rate_per_s: float, sink: bool
) -> dict[str, Any]:
    """CPU per event and share of a core over the span, the tap's share, the lags."""
    t0, c0, _, n0, _, k0, b0 = rows[0]
    t1, c1, _, counted, sunk, tapped, b1 = rows[-1]
    lags = lag_figures(rows, rate_per_s, sink)
    counted_at = next(r[0] for r in rows if r[3] >= n0 + events)
    produce_s = progress.last_sent - progress.started
    return {
        "cpu_us": (c1 - c0) / events * 1e6,
        "worker_cores": (c1 - c0) / (t1 - t0),
        "broker_cpu_us": (b1 - b0) / events * 1e6,
        "taken": tapped - k0,
        "taken_share": (tapped - k0) / events,
        "produced_rate": events / produce_s if produce_s > 0 else 0.0,
        **lags,
        "counted_after_s": max(0.0, counted_at - progress.last_sent),
        "done_after_s": max(0.0, t1 - progress.last_sent),
        "seconds": t1 - t0,
        "counted": counted,
        "sunk": sunk,
        "keeps_up": lags["max_count_lag_s"] <= KEEP_UP_S,
    }


async def warm_up(
    worker: Worker, producer: AIOKafkaProducer, topic: str, msgs: list[Message], rate_per_s: float,
    slice_s: float,
) -> Progress:
    """Ready, then the warm-up messages at the paced rate until counted (and inserted)."""
    await worker.wait_ready(180)
    progress = Progress()
    total = sum(message_events(v) for _, _, v in msgs)
    await asyncio.gather(produce_paced(producer, topic, msgs, rate_per_s, progress, slice_s),
                         sample_paced(worker, progress, total, 180))
    return progress


async def paced_run(
    args: argparse.Namespace, worker: Worker, topic: str, msgs: tuple[list[Message], list[Message]],
    broker_pid: int | None,
) -> tuple[list[Row], Progress, dict[str, int]]:
    """The warm-up, then the measured span: its rows, the producer's progress, the memory figures."""
    producer = AIOKafkaProducer(bootstrap_servers=worker.target.bootstrap, linger_ms=5,
                                max_batch_size=1 << 20, max_request_size=8 << 20)
    await producer.start()
    try:
        slice_s = args.slice_ms / 1000
        progress = await warm_up(worker, producer, topic, msgs[0], args.rate, slice_s)
        memory = MemoryTrack()
        total = progress.produced + sum(message_events(v) for _, _, v in msgs[1])
        first = await sample_row(worker, progress.produced, broker_pid)
        sampled = sample_paced(worker, progress, total, args.seconds + 600, memory, broker_pid)
        rows = (await asyncio.gather(produce_paced(producer, topic, msgs[1], args.rate, progress, slice_s),
                                     sampled))[1]
        memory.sample([worker.pid])  # VmHWM at the very end
        return [first, *rows], progress, memory.figures()
    finally:
        await producer.stop()


async def measure(args: argparse.Namespace, bootstrap: str, redis_port: int, work: Path,
                  broker_pid: int | None) -> dict[str, Any]:
    """Produce paced into a fresh topic while one worker reads it; then the raw consumer's drain."""
    topic = unique("bench.paced")
    await ensure_topics(bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    events = round(args.rate * args.seconds)
    warm_events = args.rate * WARMUP_S
    msgs = interleave(wide_messages(events + round(warm_events), args.form, args.ids,
                                    time.time_ns() // 1_000_000))
    warm, paced = split_warmup(msgs, warm_events)
    events = sum(message_events(v) for _, _, v in paced)
    worker = start_worker(args, Target(redis_port, bootstrap, topic, unique("bench")), work / "worker")
    try:
        rows, progress, memory = await paced_run(args, worker, topic, (warm, paced), broker_pid)
        threads = thread_cpu_s(worker.pid)
    finally:
        worker.stop()
    total = progress.produced
    out: dict[str, Any] = {"events": events, "messages": len(paced), "warmup_events": total - events,
                           "rate": args.rate, "seconds_paced": args.seconds,
                           "slice_ms": args.slice_ms, "form": args.form,
                           "ids": args.ids, "config": args.config, "set": args.set,
                           "threads_cpu_s": threads}
    out.update(memory)
    out.update(paced_figures(rows, progress, events, args.rate, worker.sinks))
    out["series"] = [[round(r[0] - rows[0][0], 2), *r[2:6]] for r in rows[::10] + rows[-1:]]
    base = raw(bootstrap, topic, total, broker_pid)
    out.update({"raw_cpu_us": base["cpu_us"], "raw_rate": base["rate"],
                "raw_broker_cpu_us": base["broker_cpu_us"]})
    out["cpu_ratio"] = out["raw_cpu_us"] / out["cpu_us"]
    out["exact"] = out["counted"] == total and (not worker.sinks or out["sunk"] == total)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """A private tansu and Redis for the run."""
    redis, kafka = start_redis(), start_tansu()
    try:
        with tempfile.TemporaryDirectory(prefix="streamer-paced-") as tmp:
            broker_pid = kafka.proc.pid if kafka.proc is not None else None
            return await measure(args, f"127.0.0.1:{kafka.port}", redis.port, Path(tmp), broker_pid)
    finally:
        kafka.stop()
        redis.stop()


def line(r: dict[str, Any]) -> str:
    """One human line of a result."""
    return (f"{r['form']} {r['ids']} {r['config']} {r['events']:,} events at {r['rate']:,.0f}/s "
            f"(produced {r['produced_rate']:,.0f}/s): CPU {r['cpu_us']:.2f} us/event vs raw "
            f"{r['raw_cpu_us']:.2f} (ratio {r['cpu_ratio']:.2f}), worker {r['worker_cores']:.2f} of a core; "
            f"taken by the sink {r['taken']:,.0f} ({r['taken_share']:.0%}); lag: count at most "
            f"{r['max_count_lag']:,.0f} events ({r['max_count_lag_s']:.2f} s, mean "
            f"{r['mean_count_lag_s']:.2f} s), "
            f"sink at most {r['max_sink_lag']:,.0f} ({r['max_sink_lag_s']:.2f} s, mean "
            f"{r['mean_sink_lag_s']:.2f} s), all counted "
            f"{r['counted_after_s']:.2f} s and inserted {r['done_after_s']:.2f} s after the last produce; "
            f"peak RSS {r['peak_rss'] / 2**20:.0f} MiB (anon {r['peak_anon'] / 2**20:.0f}, "
            f"file {r['peak_file'] / 2**20:.0f}); counted {r['counted']:,.0f} sunk {r['sunk']:,.0f} "
            f"exact={r['exact']} keeps_up={r['keeps_up']}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run once, append the JSON line to --out, print the summary; exit 1 unless exact."""
    args = parse_args(argv)
    result = asyncio.run(run(args))
    append_result(args.out, result, "paced", argv or sys.argv[1:], args.worker_src)
    print(line(result))
    print_threads(result)
    if not result["keeps_up"]:
        print(f"the worker fell more than {KEEP_UP_S:.0f} s of input behind: not below its capacity")
    return 0 if result["exact"] else 1
