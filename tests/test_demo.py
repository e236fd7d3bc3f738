"""`streamer demo` end to end: real broker, redis-server, chDB and worker as child processes.

One short run checks the published trending value against a recomputation from the events
the demo produced; signal runs check that nothing the demo started survives it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamer.core.events import EVENT_TYPES
from streamer.core.scoring import PostCounts, rank_posts
from tests.waiting import wait_until

MARKER = "STREAMER_DEMO_RUN"


def demo_env(tmp_path: Path, run_id: str) -> dict[str, str]:
    """Environment of a demo child: its own data dir, a report file, a marker for /proc scans."""
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("KAFKA_", "REDIS_", "CLICKHOUSE_", "JOB_", "STREAMER_")):
            del env[name]
    env.update({
        MARKER: run_id,
        "STREAMER_DATA_DIR": str(tmp_path / "data"),
        "STREAMER_DEMO_REPORT": str(tmp_path / "report.json"),
        "STREAMER_DEMO_SEED": "1234",
    })
    return env


def processes_of_run(run_id: str, data_dir: Path) -> list[str]:
    """Live processes of a run: the marker in their environment, or a cwd in its data dir.

    (redis-server overwrites its environment and command line with its process title, so it
    is found by its working directory.)
    """
    needle = f"{MARKER}={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if needle in environ.split(b"\0") or cwd.startswith(str(data_dir)):
            found.append(f"{entry.name}: {cmdline.decode(errors='replace')[:120]}")
    return found


def wait_until_gone(run_id: str, data_dir: Path, timeout_s: float = 15.0) -> list[str]:
    """Processes of the run still alive after timeout_s (empty when all are gone)."""
    with contextlib.suppress(AssertionError):
        wait_until(lambda: not processes_of_run(run_id, data_dir), timeout_s, "the run to end", 0.2)
    return processes_of_run(run_id, data_dir)


def recompute(events: list[list[Any]], start_ms: int, end_ms: int, k: int) -> list[dict[str, Any]]:
    """The contract's trending from raw produced events: each event_id once, window, rank."""
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for event_id, post_id, _user_id, event_type, ts in events:
        if event_id in seen or not start_ms <= ts < end_ms:
            continue
        seen.add(event_id)
        counts.setdefault(post_id, [0, 0, 0, 0])[EVENT_TYPES.index(event_type)] += 1
    ranked = rank_posts([PostCounts(p, *c) for p, c in counts.items()], k)
    return [p.to_payload() for p in ranked]


def recompute_people(
    events: list[list[Any]], start_ms: int, end_ms: int, k: int, min_people: int
) -> list[dict[str, Any]]:
    """Trending counted in people: distinct accounts per post and type, each event_id once."""
    seen: set[str] = set()
    accounts: dict[int, list[set[int]]] = {}
    for event_id, post_id, user_id, event_type, ts in events:
        if event_id in seen or not start_ms <= ts < end_ms:
            continue
        seen.add(event_id)
        accounts.setdefault(post_id, [set(), set(), set(), set()])[
            EVENT_TYPES.index(event_type)].add(user_id)
    listed = [PostCounts(p, *(len(s) for s in sets)) for p, sets in accounts.items()
              if len(set().union(*sets)) >= min_people]
    return [p.to_payload() for p in rank_posts(listed, k)]


def check_people_list(report: dict[str, Any]) -> None:
    """The people list equals its recount; the burst tops the events list, not the people one."""
    people, produced, burst = report["people"], report["produced"], report["produced"]["burst"]
    assert people is not None and people["verified"] is True, people
    meta = people["meta"]
    assert (meta["count"], meta["min_people"]) == ("people", people["min_people"])
    assert people["min_people"] > 1
    expected = recompute_people(produced["events"], meta["window_start_ms"], meta["window_end_ms"],
                                report["topk"], people["min_people"])
    assert people["trending"] == expected
    without_burst = [e for e in produced["events"] if e[2] != burst["user_id"]]
    assert expected == recompute_people(without_burst, meta["window_start_ms"],
                                        meta["window_end_ms"], report["topk"],
                                        people["min_people"])
    assert report["trending"][0]["post_id"] == burst["post_id"]
    assert burst["post_id"] not in [p["post_id"] for p in expected]
    assert (people["events_rank"], people["people_rank"]) == (1, 0)


class TestDemoRun:
    """A short demo run publishes a trending list equal to the recomputation."""

    def test_short_run_publishes_the_recomputed_trending_list(self, tmp_path: Path) -> None:
        """Exit 0, verified, and the dumped Redis value equals our own recomputation."""
        run_id = uuid.uuid4().hex
        proc = subprocess.run(
            [sys.executable, "-m", "streamer", "demo", "--duration", "15", "--rate", "500"],
            env=demo_env(tmp_path, run_id), capture_output=True, text=True, timeout=170,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "trending verified against recomputation: OK" in proc.stdout
        report = orjson.loads((tmp_path / "report.json").read_bytes())
        meta, produced = report["meta"], report["produced"]
        assert report["verified"] is True
        # Normally "stream"; the worker may switch to ClickHouse results if reconcile saw drift.
        assert meta["mode"] in ("stream", "clickhouse")
        expected = recompute(produced["events"], meta["window_start_ms"], meta["window_end_ms"],
                             report["topk"])
        assert report["trending"] == expected
        assert len(expected) == report["topk"]
        assert produced["counters"]["valid_events"] == len(produced["events"]) > 5000
        assert report["metrics"]["streamer_events_invalid_total"] == (
            produced["counters"]["dead_letters_expected"])
        assert report["suggestion_keys"] > 0 and report["suggestions"]
        check_people_list(report)
        assert "people list verified against recomputation: OK" in proc.stdout
        assert wait_until_gone(run_id, tmp_path / "data") == []


def start_demo(tmp_path: Path, run_id: str, duration_s: int = 60) -> subprocess.Popen[str]:
    """A demo child whose plain progress lines we can read."""
    return subprocess.Popen(
        [sys.executable, "-m", "streamer", "demo", "--duration", str(duration_s), "--rate", "300",
         "--posts", "500", "--users", "300"],
        env=demo_env(tmp_path, run_id), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def read_until(proc: subprocess.Popen[str], needle: str, timeout_s: float = 90.0) -> str:
    """Output up to and including the first line that contains needle."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if needle in line:
                return "".join(seen)
    raise AssertionError(f"never printed {needle!r}; output:\n{''.join(seen)[-3000:]}")


class TestDemoStops:
    """SIGTERM or SIGINT at any moment: exit 0 and no broker, redis-server or worker left."""

    @pytest.mark.parametrize(
        ("sig", "moment"),
        [
            (signal.SIGTERM, "Redis listening"),  # during setup, broker starting
            (signal.SIGINT, "Starting the stream worker"),  # worker joining its group
            (signal.SIGTERM, "traffic running"),  # during traffic, live phase
            (signal.SIGHUP, "traffic running"),  # the terminal was closed
        ],
        ids=["sigterm-setup", "sigint-worker-start", "sigterm-traffic", "sighup-traffic"],
    )
    def test_signal_stops_everything(self, tmp_path: Path, sig: int, moment: str) -> None:
        """Every process carrying the run's marker is gone after the demo exits 0."""
        run_id = uuid.uuid4().hex
        proc = start_demo(tmp_path, run_id)
        try:
            read_until(proc, moment)
            started = processes_of_run(run_id, tmp_path / "data")
            assert any("redis-server" in p for p in started), started
            proc.send_signal(sig)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, out[-3000:]
        if sig != signal.SIGHUP:  # after a hangup the demo prints nowhere
            assert "nothing left running" in out or "received" in out
        assert wait_until_gone(run_id, tmp_path / "data") == []

    def test_sigkill_of_the_demo_leaves_nothing_running(self, tmp_path: Path) -> None:
        """Even SIGKILL (no cleanup possible): the watchdog stops the broker, Redis and worker."""
        run_id = uuid.uuid4().hex
        proc = start_demo(tmp_path, run_id)
        try:
            read_until(proc, "traffic running")
            started = processes_of_run(run_id, tmp_path / "data")
            assert any("streamer worker" in p for p in started), started
            proc.kill()
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert wait_until_gone(run_id, tmp_path / "data", 30) == []
