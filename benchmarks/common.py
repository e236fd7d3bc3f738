"""Shared result types and measuring helpers: every figure travels with its same-run baseline."""

from __future__ import annotations

import gc
import json
import os
import re
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Kind = Literal["ratio>=", "ratio<=", "value<=", "value>="]


@dataclass(frozen=True, slots=True)
class Target:
    """A pass/fail rule on a row's value or on its ratio to the baseline."""

    kind: Kind
    threshold: float

    def check(self, value: float, ratio: float | None) -> tuple[bool, float]:
        """(passed, margin): margin is observed / threshold (>1 is better for >=, <1 for <=)."""
        observed = ratio if self.kind.startswith("ratio") else value
        if observed is None:
            return False, 0.0
        margin = observed / self.threshold if self.threshold else float("inf")
        passed = observed >= self.threshold if self.kind.endswith(">=") else observed <= self.threshold
        return passed, margin

    def describe(self) -> str:
        """Human form, e.g. `ratio >= 0.4`."""
        what, op = self.kind[:-2], self.kind[-2:]
        return f"{what} {op} {self.threshold:g}"


@dataclass(slots=True)
class Row:
    """One measured figure beside its baseline; ratio = value / baseline_value."""

    metric: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    target: Target | None = None
    note: str = ""
    passed: bool | None = None
    margin: float | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline_value when there is a non-zero baseline."""
        if self.baseline_value is None or self.baseline_value == 0:
            return None
        return self.value / self.baseline_value

    def judge(self) -> Row:
        """Fill passed/margin from the target."""
        if self.target is not None:
            self.passed, self.margin = self.target.check(self.value, self.ratio)
        return self

    def to_json(self) -> dict[str, Any]:
        """JSON form (target flattened to its text)."""
        out = asdict(self)
        out["target"] = self.target.describe() if self.target else ""
        out["ratio"] = self.ratio
        return out


@dataclass(slots=True)
class Plot:
    """A figure spec rendered by report.py: line series of (x, y) points or grouped bars."""

    name: str
    title: str
    xlabel: str
    ylabel: str
    kind: Literal["line", "bar"] = "line"
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    bars: dict[str, list[float]] = field(default_factory=dict)
    logx: bool = False
    logy: bool = False


@dataclass(slots=True)
class ScenarioResult:
    """What one scenario produced."""

    name: str
    title: str
    status: str = "ok"
    rows: list[Row] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, row: Row) -> Row:
        """Judge a row and keep it."""
        self.rows.append(row.judge())
        return row

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "title": self.title,
            "status": self.status,
            "seconds": round(self.seconds, 2),
            "notes": self.notes,
            "rows": [r.to_json() for r in self.rows],
            "plots": [asdict(p) for p in self.plots],
        }


@dataclass(slots=True)
class Context:
    """Run options handed to every scenario."""

    smoke: bool
    out_dir: Path
    step: Callable[[str], None] = lambda _msg: None
    work_dir: Path = Path("/tmp")
    facts: dict[str, float] = field(default_factory=dict)  # figures one scenario hands the next

    def size(self, smoke: int, full: int) -> int:
        """Pick the smoke or the full size."""
        return smoke if self.smoke else full


def timed(fn: Callable[[], object]) -> float:
    """Seconds one call of fn takes (GC off during the call, as for timeit)."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if was:
            gc.enable()


def paired(
    subject: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Best time of subject and of baseline, interleaved so noise hits both alike."""
    subj: list[float] = []
    base: list[float] = []
    for _ in range(repeats):
        base.append(timed(baseline))
        subj.append(timed(subject))
    return min(subj), min(base)


def median(values: list[float]) -> float:
    """Median (0 for an empty list)."""
    return statistics.median(values) if values else 0.0


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process from /proc (the current one by default)."""
    path = f"/proc/{pid or os.getpid()}/status"
    with open(path) as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm"}


def memory_status(pid: int | None = None) -> dict[str, int]:
    """Bytes resident of a process from /proc/PID/status: rss (VmRSS), its anonymous part
    (anon: heaps, mmaps of data; what the process holds) and its file-backed part (file:
    library text and mapped files, which the kernel can drop and read again), hwm (VmHWM)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid or os.getpid()}/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in STATUS_FIELDS:
                out[STATUS_FIELDS[name]] = int(rest.split()[0]) * 1024
    return out


def profile_top(fn: Callable[[], object], lines: int = 12, sort: str = "tottime") -> str:
    """cProfile of one call of fn: the top `lines` functions by `sort`, as text."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(sort).print_stats(lines)
    text = buf.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()


def write_profile(ctx: Context, name: str, text: str) -> str:
    """Save a profile under results/profiles/; return its path relative to the results dir."""
    path = ctx.out_dir / "profiles" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    return f"profiles/{name}.txt"


REPO_ROOT = Path(__file__).resolve().parents[1]
_SITE = re.compile(r"^.*?/(?:site|dist)-packages/")
_STDLIB = re.compile(r"^.*?/lib/python3\.\d+/")


def relative_path(where: str) -> str:
    """A source file name without machine prefixes: repo-relative, package-relative or `stdlib/...`."""
    root = REPO_ROOT.as_posix() + "/"
    if where.startswith(root):
        return where[len(root) :]
    if _SITE.match(where):
        return _SITE.sub("", where)
    if _STDLIB.match(where):
        return "stdlib/" + _STDLIB.sub("", where)
    return where


def source_commit(src: Path) -> str:
    """The worker's source commit, `+` when its `streamer` tree has local changes (tells runs apart)."""
    out = []
    for cmd in (["rev-parse", "--short", "HEAD"], ["status", "--porcelain", "--", "streamer"]):
        try:
            done = subprocess.run(["git", "-C", str(src), *cmd], capture_output=True, text=True, check=True)
        except (OSError, subprocess.CalledProcessError):
            return ""
        out.append(done.stdout.strip())
    return out[0] + ("+" if out[1] else "")


def command_line(name: str, words: Sequence[str], worker_src: Path | None, commit: str) -> str:
    """The command as run, without machine paths: the worker's source tree named by its commit,
    the output file (where the line is written, not how it was measured) left out."""
    named: list[str] = []
    skip = False
    for word in words:
        if skip or word.startswith("--out="):
            skip = False
            continue
        if word == "--out":
            skip = True
            continue
        named.append(f"CHECKOUT_OF_{commit}" if worker_src is not None and word == str(worker_src) else word)
    return " ".join([f"python -m benchmarks {name}", *named])


def append_result(out: Path, result: dict[str, Any], name: str, words: Sequence[str],
                  worker_src: Path | None) -> None:
    """Stamp the result (worker commit, command, time) and append it to `out` as one JSON line."""
    result["worker_commit"] = source_commit(worker_src or REPO_ROOT)
    result["command"] = command_line(name, words, worker_src, result["worker_commit"])
    result["run_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as fh:
        fh.write(json.dumps(result) + "\n")


def print_threads(result: dict[str, Any]) -> None:
    """The worker's CPU seconds by thread name, the eight largest."""
    threads = list(result["threads_cpu_s"].items())[:8]
    print("worker CPU s by thread:", ", ".join(f"{k} {v:.1f}" for k, v in threads))
