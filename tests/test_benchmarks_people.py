"""`python -m benchmarks people` at tiny sizes, so it cannot rot (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.people_cost import recount
from streamer.core.events import Event
from streamer.core.scoring import PostCounts

ROOT = Path(__file__).resolve().parents[1]


def test_core_only_quick_runs_and_reports_both_modes() -> None:
    done = subprocess.run([sys.executable, "-m", "benchmarks", "people", "--quick", "--core-only",
                           "--repeats", "1"], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    core = json.loads(done.stdout)["core"]
    assert set(core["cpu_us_per_event"]) == set(core["state_bytes_per_event"]) == {"events", "people"}
    assert core["state_bytes_per_event"]["people"] > core["state_bytes_per_event"]["events"] > 0


def test_recount_counts_people_or_events() -> None:
    events = [Event("a", 1, 7, "like", 10), Event("b", 1, 7, "like", 11),
              Event("a", 1, 7, "like", 10), Event("c", 2, 8, "view", 99)]
    assert recount(events, 0, 50, people=False) == [PostCounts(1, likes=2)]
    assert recount(events, 0, 100, people=True) == [PostCounts(1, likes=1), PostCounts(2, views=1)]
