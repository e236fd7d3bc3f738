"""What the sink's inserts leave resident: `python -m benchmarks sink-memory [--batches N] [...]`.

A fresh interpreter opens an embedded ClickHouse (chDB) in a temporary directory through the
worker's ClickHouse facade and inserts N batches of the sink's rows (`insert_rows`, 100,000
rows each by default, fresh 32-hex ids); RssAnon and RssFile (/proc/self/status) when ready,
every 5 batches, and after --idle-s seconds idle; at each, the engine's own allocator
(chDB's jemalloc, read from system.jemalloc_stats: allocated, resident, of which dirty pages not
yet returned, metadata, thread caches; its options come from JE_MALLOC_CONF); whether pandas
got loaded; the memory the engine itself tracks at the end (system.metrics MemoryTracking).
`--stub-engine`
replaces the engine's insert by a read of the serialized body (the client side alone);
`--src DIR` runs the streamer/ of another source tree (a before/after).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks sink-memory", description=__doc__)
    p.add_argument("--batches", type=int, default=20, help="inserts")
    p.add_argument("--rows", type=int, default=100_000, help="rows per insert")
    p.add_argument("--idle-s", type=float, default=12.0, help="idle time before the last reading")
    p.add_argument("--stub-engine", action="store_true", help="serialize only, the engine inserts nothing")
    p.add_argument("--src", type=Path, default=ROOT, help="source tree whose streamer/ runs")
    return p.parse_args(argv)


def status_mib() -> dict[str, int]:
    """RssAnon and RssFile of this process, MiB."""
    out: dict[str, int] = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                out[name] = int(rest.split()[0]) // 1024
    return out


# The summary lines of jemalloc's statistics (system.jemalloc_stats), bytes.
JEMALLOC_FIGURES = {
    "allocated": r"Allocated: (\d+),", "active": r"Allocated: \d+, active: (\d+),",
    "metadata": r", metadata: (\d+) ", "resident": r", resident: (\d+),",
    "tcache": r"tcache_bytes:\s+(\d+)",
}


def _figure(stats: str, pattern: str) -> int:
    """One number of jemalloc's statistics text."""
    found = re.search(pattern, stats)
    if found is None:
        raise ValueError(f"no {pattern!r} in the engine's jemalloc statistics")
    return int(found.group(1))


def jemalloc_mib(stats: str) -> dict[str, int]:
    """The engine allocator's figures in MiB from its statistics text; `dirty`: resident pages
    neither in use nor metadata (freed, not yet returned to the system)."""
    out = {name: _figure(stats, pattern) for name, pattern in JEMALLOC_FIGURES.items()}
    out["dirty"] = max(0, out["resident"] - out["active"] - out["metadata"])
    return {name: value >> 20 for name, value in out.items()}


async def engine_reading(ch: Any, rows: int) -> dict[str, Any]:
    """RssAnon/RssFile of the process and the engine allocator's figures."""
    stats = await ch.rows("SELECT * FROM system.jemalloc_stats")
    return {"rows": rows, **status_mib(), "engine": jemalloc_mib(str(stats[0][0]))}


def stub_engine() -> None:
    """The chDB backend's insert reads the serialized body and inserts nothing."""
    from clickhouse_connect.driver._backend import chdb_backend

    def consume(self: Any, context: Any, runtime: Any, body: Any, retry_body: Any) -> dict[str, Any]:
        for _ in body:
            pass
        return {}

    chdb_backend.ChdbBackend.execute_data_insert = consume  # type: ignore[method-assign]


async def child(args: argparse.Namespace, work: str) -> dict[str, Any]:
    """The measurement, in the fresh interpreter."""
    import asyncio
    import secrets
    import time

    import numpy as np

    from streamer.clickhouse.client import ClickHouse
    from streamer.clickhouse.queries import insert_rows
    from streamer.clickhouse.schema import create_schema
    from streamer.core.sink_rows import SinkRows
    from streamer.ops.memory import tune_allocator

    tune_allocator()  # as the worker does at start
    if args.stub_engine:
        stub_engine()
    ch = ClickHouse(f"chdb://{work}/clickhouse", "nova", 60_000)
    await create_schema(ch)
    readings: list[dict[str, Any]] = [await engine_reading(ch, 0)]
    rng, n, now_ms = np.random.default_rng(1), args.rows, int(time.time() * 1000)
    for batch in range(1, args.batches + 1):
        ints = rng.integers(1, 10**9, n)
        rows = SinkRows([secrets.token_hex(16) for _ in range(n)], ints, ints, (ints % 4).astype(np.uint8),
                        now_ms - ints % 2_400_000, np.zeros(n, dtype=np.int32), np.arange(n, dtype=np.int64))
        await insert_rows(ch, rows)
        if batch % 5 == 0 or batch == args.batches:
            readings.append(await engine_reading(ch, batch * n))
    await asyncio.sleep(args.idle_s)
    readings.append({**await engine_reading(ch, args.batches * n), "idle_s": args.idle_s})
    tracked = await ch.rows("SELECT value FROM system.metrics WHERE metric = 'MemoryTracking'")
    return {"readings": readings, "pandas": "pandas" in sys.modules, "stub_engine": args.stub_engine,
            "engine_tracked_mib": int(tracked[0][0]) >> 20}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurement in a fresh interpreter on the chosen source tree; print its readings."""
    args = parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="streamer-sink-memory-") as work:
        code = ("import asyncio, json, sys; sys.path[:0] = sys.argv[1:3]; "
                "from sink_memory import child, parse_args; "
                "print(json.dumps(asyncio.run(child(parse_args(sys.argv[4:]), sys.argv[3]))))")
        cmd = [sys.executable, "-c", code, str(args.src.resolve()), str(Path(__file__).parent), work,
               *(argv if argv is not None else sys.argv[1:])]
        done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    first = result["readings"][0]
    for r in result["readings"]:
        when = f"after {r['idle_s']:.0f} s idle" if "idle_s" in r else f"{r['rows']:>9,} rows"
        engine = ", ".join(f"{name} {mib}" for name, mib in r["engine"].items())
        print(f"{when}: RssAnon {r['RssAnon']} MiB (+{r['RssAnon'] - first['RssAnon']}), "
              f"RssFile {r['RssFile']} MiB (+{r['RssFile'] - first['RssFile']}); "
              f"engine allocator MiB: {engine}")
    print(f"pandas loaded: {result['pandas']}; engine stubbed: {result['stub_engine']}; "
          f"the engine's own MemoryTracking {result['engine_tracked_mib']} MiB; streamer/ from {args.src}")
    return 0
