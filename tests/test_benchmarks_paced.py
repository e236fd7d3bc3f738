"""The paced benchmark: its producer's schedule keeps the asked rate evenly, every partition is fed
through the whole run, the figures have their definitions, and a tiny run ends only when the
sink inserted every event."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.common import command_line
from benchmarks.stream_paced import Progress, Row, due_messages, interleave, paced_figures, split_warmup
from benchmarks.stream_workloads import ARRAY_SIZE, Message
from benchmarks.sustained_workload import wide_messages

ROOT = Path(__file__).resolve().parents[1]
NOW_MS = 1_795_913_777_000


def events(msgs: list[Message]) -> int:
    """Events in the messages."""
    return sum(v.count(b'"event_id"') for _, _, v in msgs)


class TestSchedule:
    """A message is due once all its events fit in rate x elapsed."""

    def test_due_messages(self) -> None:
        """100-event messages at 1,000 events/s: one due every 0.1 s, none before the first fits."""
        ends = [100, 200, 300]
        assert [due_messages(ends, 1000, t) for t in (0.0, 0.099, 0.1, 0.25, 0.3, 9.0)] == [0, 0, 1, 2, 3, 3]

    def test_slices_hold_the_rate(self) -> None:
        """Single events at 10,000/s handed over every 10 ms: 100 per slice, every slice."""
        ends = list(range(1, 30_001))
        due = [due_messages(ends, 10_000, slot / 100) for slot in range(301)]
        per_slice = [b - a for a, b in itertools.pairwise(due)]
        assert min(per_slice) >= 99 and max(per_slice) <= 101 and due[-1] == 30_000

    def test_interleave_spreads_every_partition(self) -> None:
        """Arrays come out of the generator by partition; interleaved, each quarter of the run
        feeds every partition about equally, and each partition keeps its own order."""
        msgs = wide_messages(40_000, "array", "hex", NOW_MS)
        mixed = interleave(msgs)
        assert sorted(mixed) == sorted(msgs)
        for quarter in range(4):
            part = mixed[quarter * len(mixed) // 4 : (quarter + 1) * len(mixed) // 4]
            counts = [sum(1 for p, _, _ in part if p == q) for q in range(4)]
            assert max(counts) - min(counts) <= 2
        for q in range(4):
            assert [m for m in mixed if m[0] == q] == [m for m in msgs if m[0] == q]

    def test_split_warmup(self) -> None:
        """The warm-up holds the first messages up to at least the asked events, the rest follows."""
        msgs = wide_messages(1_000, "array", "hex", NOW_MS)
        assert max(events([m]) for m in msgs) == ARRAY_SIZE
        warm, rest = split_warmup(msgs, 250)
        assert warm + rest == msgs
        assert events(warm[:-1]) < 250 <= events(warm) and events(warm) + events(rest) == 1_000
        assert split_warmup(msgs, 0) == ([], msgs)


def test_figures() -> None:
    """1,000 events at 100/s after a 50-event warm-up: the worker counts 0.5 s behind, the sink
    inserts once a second from t=2.5 and is done at t=11.5, when sampling stops; CPU, core share,
    tap share and lags from the first row (the start of production)."""
    rows: list[Row] = []
    for tenth in range(0, 116):
        t = tenth / 10
        produced = 50 + min(100 * t, 1000)
        counted = 50 + min(max(100 * (t - 0.5), 0), 1000)
        sunk = 50 + (min(100 * int(t - 1.5), 1000) if t >= 2.5 else 0)
        rows.append((t, 0.02 * t, produced, counted, sunk, 40 + 0.9 * (sunk - 50), 0.01 * t))
    progress = Progress(produced=1050, started=0.0, last_sent=10.0, done=True)
    fig = paced_figures(rows, progress, 1000, 100, sink=True)
    assert fig["cpu_us"] == pytest.approx(0.02 * 11.5 / 1000 * 1e6)
    assert fig["worker_cores"] == pytest.approx(0.02)
    assert fig["broker_cpu_us"] == pytest.approx(0.01 * 11.5 / 1000 * 1e6)
    assert fig["taken"] == pytest.approx(900) and fig["taken_share"] == pytest.approx(0.9)
    assert fig["max_count_lag"] == pytest.approx(50) and fig["max_count_lag_s"] == pytest.approx(0.5)
    # 0..40 over the first 0.5 s, 50 until t=10, 40..10 after it, then 0; over 116 rows
    assert fig["mean_count_lag"] == pytest.approx((100 + 96 * 50 + 100) / 116)
    assert fig["max_sink_lag"] == pytest.approx(240)  # at t=2.4, 3.4, ...: just before an insert
    assert fig["counted_after_s"] == pytest.approx(0.5) and fig["done_after_s"] == pytest.approx(1.5)
    assert fig["produced_rate"] == pytest.approx(100) and fig["keeps_up"] is True
    assert paced_figures(rows, progress, 1000, 20, sink=False)["keeps_up"] is False  # 2.5 s behind


def test_tiny_paced_run(tmp_path: Path) -> None:
    """A default worker on single-event messages at 500/s for 2 s: every event counted and
    inserted, the sink took some from the stream, one JSON line."""
    out = tmp_path / "paced.jsonl"
    cmd = [sys.executable, "-m", "benchmarks", "paced", "--form", "single", "--rate", "500",
           "--seconds", "2", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = json.loads(out.read_text().splitlines()[-1])
    total = result["events"] + result["warmup_events"]
    assert result["events"] == 1000 and result["counted"] == result["sunk"] == total
    assert result["exact"] is True and result["raw_cpu_us"] > 0 and result["cpu_us"] > 0
    assert 0 < result["taken"] <= result["events"] and result["peak_rss"] > 0


def test_the_recorded_command_names_no_machine_path() -> None:
    """The worker's tree becomes its commit and the output file is left out (both forms)."""
    words = ["--form", "single", "--worker-src", "/x/before", "--out", "/tmp/a.jsonl", "--out=/tmp/b"]
    line = command_line("paced", words, Path("/x/before"), "abc1234")
    assert line == "python -m benchmarks paced --form single --worker-src CHECKOUT_OF_abc1234"
    plain = command_line("sustained", ["--events", "9"], None, "")
    assert plain == "python -m benchmarks sustained --events 9"
