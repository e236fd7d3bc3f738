"""The pure core's memory over the phases of `python -m benchmarks stream --only rss`.

`python -m benchmarks core-phases [--batch N] [--posts N] [--src DIR]`: the same events (100,000 posts x 1
event, then 3 more per post; 4 partitions by the producer's partitioner) go straight into four
PartitionStates, a batch of N events of one partition at a time as the worker hands them over,
each batch's record taken as the worker does. Per phase: bytes traced by tracemalloc and the
bytes of each part of the state (array buffers, capacity included), per active post and per
further event; what the worker's RssAnon grows beyond this is outside the core. `--src DIR`
measures another tree's streamer/ (a before/after).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

POSTS, EXTRA = 100_000, 3  # the rss benchmark's sizes (benchmarks/stream_matrix.py)
ROOT = Path(__file__).resolve().parents[1]


def _nbytes(arrays: Iterable[Any]) -> int:
    """Bytes of the buffers behind these arrays (a view counts its base once)."""
    seen: dict[int, int] = {}
    for a in arrays:
        base = a if a.base is None else a.base
        seen[id(base)] = base.nbytes if isinstance(base, np.ndarray) else a.nbytes
    return sum(seen.values())


def parts(states: list[Any]) -> dict[str, int]:
    """Bytes of each part of the partitions' states."""
    w = [s.window for s in states]
    top = [a for x in w for a in x._top._touched]
    top += [x._top.candidates for x in w if x._top.candidates is not None]
    return {
        "slots: totals, held, post id, free":
            _nbytes(a for x in w for a in (x.totals, x.held, x.post_of, x._free)),
        "post index (hash table)":
            _nbytes(a for x in w for a in (x.slot_of._keys, x.slot_of._slots, x.slot_of._state)),
        "minute blocks (slot, type)":
            _nbytes(a for x in w for m in x._minutes.values() for c in m.chunks for a in c),
        "recent batches (slot, type, minute)": _nbytes(a for x in w for r in x._recent for a in r),
        "top index (candidates, touched)": _nbytes(top),
        "dedup runs (key, minute)":
            _nbytes(a for s in states for r in s.dedup._runs for a in (r.high, r.low, r.minutes)),
        "records dict (key -> minute)":
            sum(sys.getsizeof(s.records) + sum(sys.getsizeof(k) + 32 for k in s.records) for s in states),
    }


Batch = tuple[int, list[str], Any, Any, Any]


def phase_batches(batch: int, posts: int) -> list[list[Batch]]:
    """The two phases as per-partition batches of columns (partition, ids, posts, types, ts)."""
    from benchmarks.stream_workloads import PARTITIONS, events_for_posts
    from streamer.core.events import EVENT_TYPE_INDEX
    from streamer.core.partitioning import partitions_of

    now_ms = int(time.time() * 1000)
    post_ids = random.Random(31).sample(range(1, 10**12), posts)
    phases = []
    for each, seed in ((1, 32), (EXTRA, 33)):
        events = events_for_posts(post_ids, each, now_ms, seed=seed)
        of = partitions_of(np.array([e.post_id for e in events], dtype=np.int64), PARTITIONS)
        batches: list[Batch] = []
        for p in range(PARTITIONS):
            mine = [events[i] for i in np.flatnonzero(of == p).tolist()]
            for i in range(0, len(mine), batch):
                part = mine[i:i + batch]
                batches.append((p, [e.event_id for e in part],
                                np.array([e.post_id for e in part], dtype=np.int64),
                                np.array([EVENT_TYPE_INDEX[e.event_type] for e in part], dtype=np.uint8),
                                np.array([e.ts_ms for e in part], dtype=np.int64)))
        phases.append(batches)
    return phases


def run(batch: int, posts: int = POSTS) -> None:
    """Feed the phases, print the accounting table (markdown)."""
    from benchmarks.stream_workloads import PARTITIONS
    from streamer.core.partition_state import PartitionState

    phases = phase_batches(batch, posts)
    now_ms = int(time.time() * 1000)
    gc.collect()
    tracemalloc.start()
    states = [PartitionState(p, 60, now_ms) for p in range(PARTITIONS)]
    readings = [(tracemalloc.get_traced_memory()[0], parts(states), 0)]
    for batches in phases:
        record_bytes = readings[-1][2]
        for p, ids, pids, types, ts in batches:
            states[p].accept_columns(ids, pids, types, ts)
            record_bytes += sum(len(v) for _, v in states[p].take_records())
            states[p].advance(now_ms)
        gc.collect()
        readings.append((tracemalloc.get_traced_memory()[0], parts(states), record_bytes))
    _print(readings, (posts, posts * EXTRA))


def _print(readings: list[tuple[int, dict[str, int], int]], units: tuple[int, int]) -> None:
    print("| part | B per active post (with its first event) | B per further event |")
    print("| --- | --- | --- |")
    rows = [(name, [r[1][name] for r in readings]) for name in readings[0][1]]
    rows.append(("all traced by tracemalloc (the core)", [r[0] for r in readings]))
    rows.append(("record bytes written (the table's values)", [r[2] for r in readings]))
    for name, values in rows:
        cells = [(values[i + 1] - values[i]) / units[i] for i in (0, 1)]
        print(f"| {name} | {cells[0]:.1f} | {cells[1]:.1f} |")


def main(argv: list[str]) -> int:
    """Parse options; with --src, rerun this module over that tree's streamer/."""
    p = argparse.ArgumentParser(prog="python -m benchmarks core-phases", description=__doc__)
    p.add_argument("--batch", type=int, default=2_000, help="events of one partition per accepted batch")
    p.add_argument("--posts", type=int, default=POSTS, help="active posts (the rss benchmark's 100,000)")
    p.add_argument("--src", type=Path, help="measure this tree's streamer/ instead")
    args = p.parse_args(argv)
    if args.src is None:
        run(args.batch, args.posts)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "streamer").symlink_to(args.src.resolve() / "streamer")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join((tmp, str(ROOT))))
        code = "import sys; from benchmarks.core_phases import run; run(*map(int, sys.argv[1:]))"
        cmd = [sys.executable, "-c", code, str(args.batch), str(args.posts)]
        return subprocess.run(cmd, env=env, cwd=tmp, check=False).returncode
