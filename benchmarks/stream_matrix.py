"""The stream matrix: `python -m benchmarks stream [--quick] [--only SECTION ...] [--out DIR]`.

Both workloads x both configurations x single/array messages beside raw consumers of the same
topic, two workers vs one, RSS of the running worker, changelog bytes, rebuild and publish.
Writes DIR/stream.json and (full runs into the default directory) the stream part of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import stream_report
from benchmarks.stream_cases import (
    Rig,
    baselines,
    profile_case,
    publish_case,
    publish_workload,
    rss_case,
    worker_case,
)
from benchmarks.stream_profile import py_spy_binary
from benchmarks.stream_state import rebuild
from benchmarks.stream_workloads import FULL, QUICK, Form, Sizes, Workload, skewed_events, wide_events
from streamer.demo.services import start_redis, start_tansu

SECTIONS = ("throughput", "scaling", "rss", "rebuild", "publish", "profile")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
FORMS: tuple[Form, ...] = ("single", "array")
CONFIG_NAMES = ("default", "tuned")
Log = Callable[[str], None]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks stream", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run just these sections")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from DIR/stream.json")
    return parser.parse_args(argv)


def now_ms() -> int:
    """Wall clock in epoch ms."""
    return time.time_ns() // 1_000_000


async def throughput(rig: Rig, load: Workload, log: Log, scaling: bool) -> tuple[list[Any], list[Any]]:
    """Every config x form of one workload beside its baselines (read before and after the workers)."""
    rows: list[dict[str, Any]] = []
    scale: list[dict[str, Any]] = []
    for form in FORMS:
        log(f"{load.name}/{form}: raw consumers")
        base = await baselines(rig, load, form)
        for config in CONFIG_NAMES:
            log(f"{load.name}/{form}/{config}: one worker")
            one = await worker_case(rig, load, form, config, 1)
            rows.append(dict(one, workload=load.name, form=form, config=config, messages=load.messages[form]))
            if scaling and config == "default" and (form == "array" or not rig.quick):
                log(f"{load.name}/{form}/{config}: two workers")
                two = await worker_case(rig, load, form, config, 2)
                scale.append(
                    dict(two, workload=load.name, form=form, config=config, one_rate=one["rate"])
                    | {"events": len(load.events)}
                )
        again = await baselines(rig, load, form)
        for row in rows[-len(CONFIG_NAMES) :]:
            row.update(events=len(load.events), posts=load.posts)
            row.update({f"raw_{k}": max(v, again[k]) for k, v in base.items()})
    return rows, scale


async def stream_sections(rig: Rig, sizes: Sizes, only: set[str], out: Path, log: Log) -> dict[str, Any]:
    """The worker sections (each workload produced just before its runs, so its events stay in the window)."""
    doc: dict[str, Any] = {}
    want_workers = only & {"throughput", "scaling", "profile"}
    for name, make in (("wide", wide_events), ("skewed", skewed_events)):
        if not want_workers or (name == "skewed" and ("throughput" not in only or rig.quick)):
            continue
        log(f"{name}: producing")
        load = Workload(name, make(sizes, now_ms()))
        await publish_workload(rig, load)
        shape: dict[str, int] = {"events": len(load.events), "posts": load.posts}
        shape.update({str(form): n for form, n in load.messages.items()})
        doc.setdefault("workloads", {})[name] = shape
        if only & {"throughput", "scaling"}:
            rows, scale = await throughput(rig, load, log, scaling=name == "wide" and "scaling" in only)
            doc.setdefault("throughput", []).extend(rows)
            doc.setdefault("scaling", []).extend(scale)
        if name == "wide" and "profile" in only and py_spy_binary() is not None:
            log("wide/array/default: one worker under py-spy")
            path = out / "profiles" / "stream" / "worker_wide_array_default.txt"
            doc["profile"] = await profile_case(rig, load, "array", "default", path, 1 if rig.quick else 2)
    if "rss" in only:
        posts, extra = (2_000, 3) if rig.quick else (100_000, 3)
        doc["rss"] = []
        for config in CONFIG_NAMES[:1] if rig.quick else CONFIG_NAMES:
            log(f"rss/{config}: {posts:,} posts, then {posts * extra:,} more events")
            doc["rss"].append(await rss_case(rig, config, posts, extra, now_ms()))
    return doc


def offline_sections(quick: bool, only: set[str], log: Log) -> dict[str, Any]:
    """Rebuild from records (child process, one core) and publish over many posts."""
    doc: dict[str, Any] = {}
    if "rebuild" in only:
        events = 100_000 if quick else 10_000_000
        log(f"rebuild: {events:,} in-window events from records")
        doc["rebuild"] = rebuild(events)
    if "publish" in only:
        posts = 20_000 if quick else 1_000_000
        log(f"publish: top-50 over {posts:,} posts in 8 partitions")
        doc["publish"] = publish_case(posts, 8, now_ms() // 60_000 * 60_000, 3 if quick else 7)
    return doc


async def run_matrix(args: argparse.Namespace, log: Log) -> dict[str, Any]:
    """Start a private tansu and Redis, run the selected sections, return the results document."""
    only = set(args.only or SECTIONS)
    sizes = QUICK if args.quick else FULL
    began = time.perf_counter()
    doc: dict[str, Any] = {}
    if only & {"throughput", "scaling", "profile", "rss"}:
        redis, kafka = start_redis(), start_tansu()
        try:
            with tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp:
                rig = Rig(f"127.0.0.1:{kafka.port}", redis.port, Path(tmp), args.quick)
                doc.update(await stream_sections(rig, sizes, only, args.out, log))
        finally:
            kafka.stop()
            redis.stop()
    doc.update(offline_sections(args.quick, only, log))
    doc["seconds"] = round(time.perf_counter() - began, 1)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the matrix, merge into DIR/stream.json, regenerate the stream part of RESULTS.md."""
    args = parse_args(argv)
    if args.report_only:
        stream_report.update_results_md(
            stream_report.markdown(json.loads((args.out / "stream.json").read_text()))
        )
        return 0
    started = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    fresh = asyncio.run(run_matrix(args, log))
    fresh["run_at"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    fresh["quick"] = args.quick
    fresh["command"] = stream_report.command(args)
    path = args.out / "stream.json"
    args.out.mkdir(parents=True, exist_ok=True)
    previous = json.loads(path.read_text()) if path.exists() and args.only and not args.quick else {}
    doc = stream_report.merge(previous, fresh)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    text = stream_report.markdown(doc)
    if not args.quick and args.out.resolve() == DEFAULT_OUT.resolve():
        stream_report.update_results_md(text)
    print(text)
    log(f"done in {fresh['seconds']} s")
    return 0 if stream_report.all_exact(doc) else 1
