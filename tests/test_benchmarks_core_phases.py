"""`python -m benchmarks core-phases` and `... rss-phases` at tiny sizes, so they cannot rot (no
timing assertions): every part of the state is listed, every event is counted."""

from __future__ import annotations

import json
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


def test_rss_phases_runs_a_worker_through_every_phase() -> None:
    """`python -m benchmarks rss-phases` at a tiny size: a real worker counts every event."""
    done = subprocess.run([sys.executable, "-m", "benchmarks", "rss-phases", "--config", "tuned",
                           "--posts", "500"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["counted"] == out["events"] == 2500
    assert set(out["anon"]) == {"posts", "other posts", "further events"}
