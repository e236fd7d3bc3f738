"""`python -m benchmarks index` at a tiny size, so it cannot rot (no timing assertions): the
table and the dict must hand out the same slots, or the command exits non-zero."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_index_benchmark_runs_and_agrees_with_the_dict() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "index", "--events", "20000",
                           "--batches", "7", "300"], cwd=ROOT, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = done.stdout.splitlines()[2:]
    assert [int(r.split()[0]) for r in rows] == [7, 300]
