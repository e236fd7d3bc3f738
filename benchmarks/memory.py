"""Scenario 4: bytes per active post and per in-window event of the core state, in a subprocess."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import tracemalloc
import uuid
from collections.abc import Iterator

from benchmarks.common import (
    Context,
    Plot,
    Row,
    ScenarioResult,
    Target,
    relative_path,
    rss_bytes,
    write_profile,
)
from benchmarks.workloads import EventTuple, core_ingest_iter, naive_ingest_iter
from streamer.core.events import EVENT_TYPE_INDEX
from streamer.core.window import MINUTE_MS
from streamer.demo import generate

POST_TARGET_B = 1024.0
EVENT_TARGET_B = 64.0
NOW_MS = 1_795_913_760_000


def _one_per_post(posts: int) -> Iterator[EventTuple]:
    for pid in range(1, posts + 1):
        yield (_uuid(pid), pid, 0, NOW_MS - 30 * MINUTE_MS)


def _zipf(events: int, posts: int) -> Iterator[EventTuple]:
    for i, e in enumerate(generate.events(events, posts, max(1, posts // 4), NOW_MS, 55 * MINUTE_MS, seed=5)):
        yield (_uuid(posts + i), e.post_id, EVENT_TYPE_INDEX[e.event_type], e.ts_ms)


def _uuid(n: int) -> str:
    """A fresh 36-character UUID-shaped id (what producers typically send)."""
    return str(uuid.UUID(int=(n * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % (1 << 128)))


def probe(kind: str, workload: str, posts: int, events: int, mode: str) -> dict[str, object]:
    """Ingest a workload (ids created on the fly, as decoding would) and measure what stays."""
    source = _one_per_post(posts) if workload == "posts" else _zipf(events, posts)
    ingest = core_ingest_iter if kind == "core" else naive_ingest_iter
    gc.collect()
    if mode == "trace":
        tracemalloc.start()
    before = rss_bytes()
    state, active, counted = ingest(source)
    gc.collect()
    out: dict[str, object] = {"rss": rss_bytes() - before, "active": active, "events": counted}
    if mode == "trace":
        snap = tracemalloc.take_snapshot()
        out["traced"] = tracemalloc.get_traced_memory()[0]
        top = snap.statistics("lineno")[:8]
        out["top"] = [f"{s.size / max(1, counted):7.1f} B/event  {_site(s.traceback)}" for s in top]
        tracemalloc.stop()
    del state
    return out


def _site(trace: tracemalloc.Traceback) -> str:
    """`file:line` of an allocation site, without machine-specific path prefixes."""
    frame = trace[0]
    return f"{relative_path(frame.filename)}:{frame.lineno}"


def _spawn(kind: str, workload: str, posts: int, events: int, mode: str) -> dict[str, object]:
    cmd = [sys.executable, "-m", "benchmarks.memory", kind, workload, str(posts), str(events), mode]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=True)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run(ctx: Context) -> ScenarioResult:
    """Per-post and per-event bytes of the core vs a dict-counter + id-set baseline."""
    res = ScenarioResult("memory", "Memory of the core state (PartitionWindow + DedupIndex)")
    posts = ctx.size(5_000, 100_000)
    events = ctx.size(50_000, 500_000)
    per: dict[tuple[str, str], float] = {}
    for mode in ("trace", "rss"):
        for kind in ("core", "naive"):
            ctx.step(f"{kind} {mode}: {posts:,} posts x 1 event")
            a = _spawn(kind, "posts", posts, posts, mode)
            ctx.step(f"{kind} {mode}: {events:,} Zipf events over {posts:,} posts")
            b = _spawn(kind, "events", posts, events, mode)
            field = "traced" if mode == "trace" else "rss"
            per_post = float(a[field]) / int(str(a["active"]))  # type: ignore[arg-type]
            extra = float(b[field]) - per_post * int(str(b["active"]))  # type: ignore[arg-type]
            per[(kind, mode)] = per_post
            per[(kind, mode + "/event")] = extra / max(1, int(str(b["events"])) - int(str(b["active"])))
            if kind == "core" and mode == "trace":
                lines = [f"{events:,} events (36-char ids) over {b['active']} active posts; top sites:"]
                path = write_profile(ctx, "memory_core", "\n".join(lines + list(b["top"])))  # type: ignore[call-overload]
                res.notes.append(f"Where the core's memory goes (tracemalloc by line): `{path}`.")
    _rows(res, per)
    ctx.facts["core_bytes_per_event"] = per[("core", "trace/event")]
    return res


def _rows(res: ScenarioResult, per: dict[tuple[str, str], float]) -> None:
    for mode, label in (("trace", "tracemalloc"), ("rss", "RSS delta")):
        post_target = Target("value<=", POST_TARGET_B) if mode == "trace" else None
        event_target = Target("value<=", EVENT_TARGET_B) if mode == "trace" else None
        res.add(
            Row(
                f"bytes per active post ({label})",
                per[("core", mode)],
                "B",
                "dict counter + id set",
                per[("naive", mode)],
                post_target,
                "a post with its first event: bucket, totals, index entry, one dedup id",
            )
        )
        res.add(
            Row(
                f"bytes per in-window event ({label})",
                per[("core", mode + "/event")],
                "B",
                "dict counter + id set",
                per[("naive", mode + "/event")],
                event_target,
                "marginal event of a live post: dedup id (+ a new minute bucket sometimes)",
            )
        )
    plot = Plot(
        "memory",
        "Bytes of state (tracemalloc)",
        "",
        "bytes",
        kind="bar",
        categories=["per active post", "per in-window event"],
    )
    plot.bars["core"] = [per[("core", "trace")], per[("core", "trace/event")]]
    plot.bars["dict counter + id set"] = [per[("naive", "trace")], per[("naive", "trace/event")]]
    plot.bars["target"] = [POST_TARGET_B, EVENT_TARGET_B]
    res.plots.append(plot)


if __name__ == "__main__":
    _kind, _workload, _posts, _events, _mode = sys.argv[1:6]
    print(json.dumps(probe(_kind, _workload, int(_posts), int(_events), _mode)))
