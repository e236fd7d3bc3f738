"""The benchmark suite in --smoke mode (tiny sizes) so it cannot rot; no timing assertions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import stream_e2e
from benchmarks.common import Row, Target
from benchmarks.report import ANALYSIS_END, ANALYSIS_START, analysis_block, merge, table

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ["core", "memory", "batch", "suggestions"]


def _run_suite(out: Path, only: list[str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out)]
    for name in only:
        cmd += ["--only", name]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    doc: dict[str, Any] = json.loads((out / "latest.json").read_text())
    return doc


class TestTargets:
    """Pass/fail rules judge the value or the ratio to the same-run baseline."""

    def test_ratio_target_uses_the_baseline(self) -> None:
        """A worker at 0.5 x the raw consumer passes a >= 0.4 x target with margin 1.25."""
        row = Row("w", 50.0, "events/s", "raw", 100.0, Target("ratio>=", 0.4)).judge()
        assert row.passed is True
        assert row.margin == pytest.approx(1.25)

    def test_value_target_fails_above_the_bound(self) -> None:
        """A 60 ms publish misses a <= 50 ms target."""
        row = Row("p", 60.0, "ms", "sort", 600.0, Target("value<=", 50)).judge()
        assert row.passed is False
        assert row.ratio == pytest.approx(0.1)

    def test_merge_replaces_only_rerun_scenarios(self) -> None:
        """--only keeps the other scenarios of the previous run."""
        old = {"scenarios": [{"name": "core", "v": 1}, {"name": "memory", "v": 1}]}
        doc = merge(old, [{"name": "memory", "v": 2}])
        assert [(s["name"], s["v"]) for s in doc["scenarios"]] == [("core", 1), ("memory", 2)]


class TestSteadyRate:
    """The stream rate counts only the span in which every worker makes progress."""

    def test_one_worker_from_first_progress_to_done(self) -> None:
        """Startup time before the first counted event is excluded."""
        samples = [(0.0, [0.0]), (5.0, [0.0]), (6.0, [100.0]), (7.0, [300.0])]
        rate, _ = stream_e2e.steady_rate(samples)
        assert rate == pytest.approx(150.0)

    def test_two_workers_while_both_progress(self) -> None:
        """A worker that finished its share early does not dilute the summed rate."""
        samples = [
            (0.0, [0.0, 0.0]),
            (1.0, [10.0, 10.0]),
            (2.0, [20.0, 20.0]),
            (3.0, [30.0, 30.0]),
            (4.0, [40.0, 30.0]),
            (5.0, [50.0, 30.0]),
        ]
        rate, _ = stream_e2e.steady_rate(samples)
        assert rate == pytest.approx(20.0)


def test_smoke_suite_writes_json_markdown_and_plots(tmp_path: Path) -> None:
    """Every offline scenario runs, agrees with its cross-checks and writes its outputs."""
    doc = _run_suite(tmp_path, OFFLINE)
    scenarios = {s["name"]: s for s in doc["scenarios"]}
    assert set(scenarios) == set(OFFLINE)
    for scen in scenarios.values():
        assert scen["status"] == "ok", scen["notes"]
        assert scen["rows"], scen["name"]
        for plot in scen["plots"]:
            assert (tmp_path / f"{plot['name']}.png").stat().st_size > 1000
    exact = [r for s in scenarios.values() for r in s["rows"] if r["unit"] == "bool"]
    assert exact and all(r["value"] == 1.0 for r in exact), exact
    assert "| scenario | metric |" in (tmp_path / "latest.md").read_text()
    assert doc["machine"]["nproc"] >= 1


@pytest.mark.skipif(not stream_e2e.worker_available(), reason="worker unavailable")
def test_smoke_stream_scenario(tmp_path: Path) -> None:
    """One worker drains tiny topics and its published top-50 equals the recomputation."""
    doc = _run_suite(tmp_path, ["stream"])
    (scen,) = doc["scenarios"]
    assert scen["status"] == "ok", scen["notes"]
    exact = [r for r in scen["rows"] if r["unit"] == "bool"]
    assert exact and all(r["value"] == 1.0 for r in exact), exact


def test_table_marks_failures() -> None:
    """A missed target is bold FAIL in the markdown table."""
    row = Row("m", 2.0, "B", "b", 1.0, Target("value<=", 1)).judge().to_json()
    doc = {"scenarios": [{"name": "x", "title": "x", "status": "ok", "rows": [row]}]}
    assert "**FAIL** (2.00x of target)" in table(doc)


def test_hand_written_analysis_survives_regeneration() -> None:
    """RESULTS.md keeps the text between the analysis markers when the tables are rewritten."""
    page = f"# R\n{ANALYSIS_START}\nThe core misses 64 B/event.\n{ANALYSIS_END}\n| table |"
    assert analysis_block(page) == "The core misses 64 B/event."
    assert analysis_block("no markers") == ""
