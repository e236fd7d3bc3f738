"""`python -m benchmarks core-phases` at a tiny size, so it cannot rot (no timing assertions):
every part of the state is listed, and the dedup keys cost their 20 bytes per event."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_phases_accounts_every_part() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "core-phases", "--posts", "3000",
                           "--batch", "500"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r.split("|")[1].strip(): r.split("|")[2:4] for r in done.stdout.splitlines()[2:]}
    assert len(rows) == 9
    assert [float(c) for c in rows["dedup runs (key, minute)"]] == [20.0, 20.0]  # 16 B key + minute
