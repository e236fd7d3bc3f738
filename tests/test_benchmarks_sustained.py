"""The sustained benchmark: its wide workload has the promised shape, its figures their definitions,
and a tiny run ends only when the sink inserted every event."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest

from benchmarks.stream_sustained import first_counted, halves, two_figures, worker_figures
from benchmarks.stream_workloads import ARRAY_SIZE, PARTITIONS
from benchmarks.sustained_workload import HOT_POSTS, SPAN_MS, events_by_partition, wide_messages
from streamer.core.partitioning import partition_for_post

ROOT = Path(__file__).resolve().parents[1]
NOW_MS = 1_795_913_777_000
HEX32 = re.compile(r"[0-9a-f]{32}")
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def members(value: bytes) -> list[dict[str, object]]:
    """The events of one message."""
    doc = orjson.loads(value)
    return doc if isinstance(doc, list) else [doc]


class TestWideMessages:
    """70 % long tail with one or two events per post, 30 % on the hot head, placed by post."""

    @pytest.mark.parametrize(("form", "ids", "pattern"), [("single", "hex", HEX32),
                                                          ("array", "uuid", UUID4)])
    def test_shape(self, form: str, ids: str, pattern: re.Pattern[str]) -> None:
        """Every event once, in its post's partition, ids of the asked form, ts in 40 minutes."""
        total = 20_000
        msgs = wide_messages(total, form, ids, NOW_MS)  # type: ignore[arg-type]
        events = [e for _, _, v in msgs for e in members(v)]
        assert len(events) == total
        assert len({e["event_id"] for e in events}) == total
        assert all(pattern.fullmatch(str(e["event_id"])) for e in events)
        assert all(NOW_MS - SPAN_MS < int(e["ts"]) <= NOW_MS for e in events)  # type: ignore[call-overload]
        assert all(partition_for_post(int(e["post_id"]), PARTITIONS) == p  # type: ignore[call-overload]
                   for p, _, v in msgs for e in members(v))
        assert max(len(members(v)) for _, _, v in msgs) == (ARRAY_SIZE if form == "array" else 1)
        per_post = Counter(int(e["post_id"]) for e in events)  # type: ignore[call-overload]
        hot = [n for n in per_post.values() if n > 2]
        assert len(hot) <= HOT_POSTS and sum(hot) >= 0.29 * total
        tail = [n for n in per_post.values() if n <= 2]
        assert 0.6 <= tail.count(1) / len(tail) <= 0.8  # one event for ~70 % of tail posts
        per_part = Counter(p for p, _, v in msgs for _ in members(v))
        assert events_by_partition(msgs) == dict(per_part)


class TestFigures:
    """Counting between 10 % and 90 %; sustained and CPU from the sample before the first count."""

    def test_definitions(self) -> None:
        """Counting at 1,000/s, the sink at 800/s: sampling stops when the sink is done (t=14).

        The worker uses 0.1 s of CPU per second, the broker 0.3 s: 0.4 cores busy."""
        samples = [(float(t), 0.1 * t, float(min(1000 * max(t - 1, 0), 10_000)),
                    float(min(800 * max(t - 1, 0), 10_000)), 0.3 * t) for t in range(0, 15)]
        fig = worker_figures(samples, 10_000)
        assert fig["counting_10_90"] == pytest.approx(1000)
        assert fig["sustained"] == pytest.approx(10_000 / 13)  # from t=1 to t=14 (sink done)
        assert fig["cpu_us"] == pytest.approx(0.1 * 13 / 10_000 * 1e6)
        assert fig["broker_cpu_us"] == pytest.approx(0.3 * 13 / 10_000 * 1e6)
        assert fig["cores_busy"] == pytest.approx(0.4)

    def test_scaling_efficiency(self) -> None:
        """Two workers 1.5x one while two raw consumers read 2x one: E = 0.75; CPU per event 1.2x."""
        one = {"sustained": 1000.0, "raw_rate": 4000.0, "cpu_us": 10.0}
        samples = [(float(t), 0.018 * t, float(min(1500 * t, 3000)), float(min(1500 * t, 3000)), 0.0)
                   for t in range(0, 3)]
        fig = two_figures(samples, 3000, one, {"rate": 8000.0, "cpu_us": 2.0, "broker_cpu_us": 1.0})
        assert fig["two_sustained"] == pytest.approx(1500)
        assert fig["efficiency"] == pytest.approx(0.75)
        assert fig["cpu_two_vs_one"] == pytest.approx(1.2)

    def test_first_counted_of_each_worker(self) -> None:
        """Per worker, the first sample with a count (the sinks may insert before): start skew."""
        series = [[10.0, 0, 0, 0, 0], [10.5, 0, 5, 0, 0], [11.0, 7, 5, 0, 0], [12.5, 9, 9, 3, 0]]
        assert first_counted(series, 10.5) == [0.5, 2.0]

    def test_halves(self) -> None:
        """Each of two raw consumers gets half the partitions and the events they hold."""
        shares = halves({0: 5, 1: 7, 2: 11, 3: 13})
        assert shares == [([0, 2], 16), ([1, 3], 20)]


def test_tiny_run_waits_for_the_sink(tmp_path: Path) -> None:
    """A default worker on 3,000 single-event messages: counted and sunk exactly, one JSON line."""
    out = tmp_path / "sustained.jsonl"
    cmd = [sys.executable, "-m", "benchmarks", "sustained", "--events", "3000", "--form", "single",
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text().splitlines()[-1])
    assert result["counted"] == result["sunk"] == 3000 and result["exact"] is True
    assert result["raw_cpu_us"] > 0 and result["cpu_us"] > 0 and result["peak_rss"] > 0
    # the broker's CPU over a tiny run may be 0 ticks (10 ms each): its figures are present,
    # and the cores busy over the span include the worker's CPU
    assert {"broker_cpu_us", "raw_broker_cpu_us"} <= result.keys() and result["cores_busy"] > 0
    assert 0 < result["peak_anon"] < result["peak_rss"] and 0 < result["peak_file"] < result["peak_rss"]
    assert 0 < result["end_anon"] <= result["peak_anon"] and 0 < result["end_file"] <= result["peak_file"]
    assert result["peak_rss_sampled"] <= result["peak_rss"]  # VmHWM is the kernel's own peak
    assert "anon" in done.stdout and "file" in done.stdout


def test_tiny_two_worker_run(tmp_path: Path) -> None:
    """`--workers 2`: two workers together count and sink every event between them; E is reported."""
    out = tmp_path / "sustained.jsonl"
    cmd = [sys.executable, "-m", "benchmarks", "sustained", "--events", "3000", "--form", "single",
           "--workers", "2", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text().splitlines()[-1])
    assert result["two_counted"] == result["two_sunk"] == 3000 and result["exact"] is True
    assert result["efficiency"] > 0 and result["raw_two_rate"] > 0 and result["two_cpu_us"] > 0
