"""The benchmark suite (--smoke) and the stream matrix (--quick) at tiny sizes so they cannot rot.

No timing assertions: the checks are that the harness runs, counts exactly and writes its outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks import state_adapter, stream_report
from benchmarks.common import Row, Target, relative_path
from benchmarks.report import ANALYSIS_END, ANALYSIS_START, analysis_block, merge, table
from benchmarks.stream_profile import summarize
from benchmarks.stream_worker import steady_rate
from benchmarks.stream_workloads import ARRAY_SIZE, PARTITIONS, QUICK, messages, wide_events
from streamer.core.partitioning import partition_for_post

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
        rate, _ = steady_rate(samples)
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
        rate, _ = steady_rate(samples)
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


NOW_MS = 1_795_913_760_000


class TestWorkloads:
    """The wide workload and the message layouts are what RESULTS.md says they are."""

    def test_wide_posts_have_one_or_two_events_apart_from_the_hot_head(self) -> None:
        """Every tail post has 1 or 2 events; ids are distinct UUID4s; ts within the last 40 minutes."""
        events = wide_events(QUICK, NOW_MS)
        per_post: dict[int, int] = {}
        for e in events:
            per_post[e.post_id] = per_post.get(e.post_id, 0) + 1
        assert len(per_post) == QUICK.wide_posts
        tail = sorted(per_post.values())[: QUICK.wide_posts - QUICK.hot_posts]
        assert set(tail) == {1, 2}
        assert len({e.event_id for e in events}) == len(events)
        assert all(uuid.UUID(e.event_id).version == 4 for e in events[:200])
        assert all(NOW_MS - 40 * 60_000 < e.ts_ms <= NOW_MS for e in events)

    def test_arrays_hold_one_partition_and_every_event_once(self) -> None:
        """100-event arrays: members all belong to the message's partition; nothing lost or doubled."""
        events = wide_events(QUICK, NOW_MS)
        seen: list[str] = []
        for part, key, value in messages(events, "array"):
            members = orjson.loads(value)
            assert 1 <= len(members) <= ARRAY_SIZE
            assert {partition_for_post(m["post_id"], PARTITIONS) for m in members} == {part}
            assert partition_for_post(int(key), PARTITIONS) == part
            seen += [m["event_id"] for m in members]
        assert sorted(seen) == sorted(e.event_id for e in events)


def test_records_rebuild_counts_each_event_once() -> None:
    """Records built through the adapter load back to exactly the events, a replayed record adding none."""
    rows = [
        (str(uuid.UUID(int=i + 1, version=4)), i % 7, i % 4, NOW_MS - 60_000 * (1 + i % 50))
        for i in range(1000)
    ]
    records = list(state_adapter.build_records(rows, per_record=300))
    state = state_adapter.new_state(NOW_MS)
    state_adapter.load_records(state, records + records[:1])
    assert len(records) == 4
    assert state_adapter.counted_events(state) == 1000
    assert state_adapter.active_posts(state) == 7


def test_publish_state_agrees_with_a_full_sort() -> None:
    """The adapter's publish equals sorting every post's totals."""
    parts = state_adapter.publish_state(2_000, 8, NOW_MS)
    assert state_adapter.publish_top(parts, 50) == state_adapter.publish_full_sort(parts, 50)


def test_profile_summary_and_paths_hold_no_machine_prefix() -> None:
    """Collapsed stacks become shares per function with repo-relative or package-relative files."""
    root = Path(__file__).resolve().parents[1].as_posix()
    run = "run (/x/lib/python3.11/asyncio/base_events.py:10)"
    raw = (
        f"{run};add ({root}/streamer/core/dedup.py:22) 3\n"
        f"{run};get (/v/lib/python3.11/site-packages/aiokafka/c.py:5) 1\n"
    )
    text = summarize(raw, "test")
    assert "75.0  add (streamer/core/dedup.py)" in text
    assert "100.0  run (stdlib/asyncio/base_events.py)" in text
    assert "aiokafka/c.py" in text and root not in text and "/x/" not in text
    assert relative_path("/opt/py/lib/python3.11/site-packages/orjson/x.py") == "orjson/x.py"


def test_results_md_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    """Regenerating the stream part replaces only the latest-run block."""
    page = tmp_path / "RESULTS.md"
    page.write_text("# Benchmark results\n\nhand-kept before table\n")
    stream_report.update_results_md("first run", page)
    stream_report.update_results_md("second run", page)
    text = page.read_text()
    assert "second run" in text and "first run" not in text
    assert text.count(stream_report.LATEST_START) == 1 and "hand-kept before table" in text


def test_quick_stream_matrix_counts_exactly_and_writes_its_outputs(tmp_path: Path) -> None:
    """`python -m benchmarks stream --quick`: every worker counted exactly what was produced."""
    cmd = [sys.executable, "-m", "benchmarks", "stream", "--quick", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads((tmp_path / "stream.json").read_text())
    cases = {(r["workload"], r["form"], r["config"]) for r in doc["throughput"]}
    assert cases == {("wide", f, c) for f in ("single", "array") for c in ("default", "tuned")}
    for row in doc["throughput"] + doc["scaling"]:
        assert row["exact"] and row["counted"] == row["events"] == doc["workloads"]["wide"]["events"], row
    for row in doc["throughput"]:
        assert row["raw_stdlib"] > 0 and row["raw_orjson"] > 0 and row["changelog_bytes"] > 0
    (rss,) = doc["rss"]
    assert rss["counted"] == rss["events"] == 4 * rss["posts"] and min(rss["rss"]) > 0
    for rss_b, anon_b, file_b in zip(rss["rss"], rss["anon"], rss["file"], strict=True):
        assert 0 < anon_b < rss_b and 0 < file_b < rss_b  # VmRSS = RssAnon + RssFile + RssShmem
    assert {"per_event_anon", "per_post_anon", "per_event_file"} <= rss.keys()
    assert doc["rebuild"]["counted"] == doc["rebuild"]["events"]
    assert doc["publish"]["exact"]
    for heading in ("#### Throughput", "#### Two workers vs one", "#### Memory of the running worker"):
        assert heading in done.stdout


def test_sink_memory_reports_each_reading() -> None:
    """`python -m benchmarks sink-memory`: ready, after the inserts, after idle; pandas stays out."""
    cmd = [sys.executable, "-m", "benchmarks", "sink-memory", "--batches", "2", "--rows", "1000",
           "--idle-s", "0"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert [line.split(":")[0].strip() for line in lines[:3]] == ["0 rows", "2,000 rows", "after 0 s idle"]
    for line in lines[:3]:  # the engine's own allocator at each reading
        engine = dict(part.split() for part in line.split("engine allocator MiB: ")[1].split(", "))
        assert set(engine) == {"allocated", "active", "metadata", "resident", "tcache", "dirty"}
        assert 0 < int(engine["allocated"]) <= int(engine["resident"])
    assert "pandas loaded: False; engine stubbed: False" in lines[3]
