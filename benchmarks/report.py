"""Write latest.json, latest.md, PNG plots and benchmarks/RESULTS.md from scenario results."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "aiokafka",
    "faust-streaming",
    "chdb",
    "chdb-core",
    "clickhouse-connect",
    "sortedcontainers",
    "orjson",
    "redis",
    "matplotlib",
)
RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def machine() -> dict[str, Any]:
    """nproc, CPU model, Python and package versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "missing"
    return {
        "nproc": _nproc(),
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "tansu": _tansu_version(),
    }


def _nproc() -> int:
    import os

    return len(os.sched_getaffinity(0))


def _tansu_version() -> str:
    try:
        from streamer.demo.services import tansu_binary

        out = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except Exception:
        return "unavailable"


def merge(previous: dict[str, Any] | None, scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    """New scenario results replace same-named ones of the previous run (for --only)."""
    kept = {s["name"]: s for s in (previous or {}).get("scenarios", [])}
    for scen in scenarios:
        kept[scen["name"]] = scen
    order = ["stream", "core", "batch", "memory", "suggestions"]
    return {
        "scenarios": sorted(kept.values(), key=lambda s: order.index(s["name"]) if s["name"] in order else 99)
    }


def fmt(value: float | None) -> str:
    """Compact number: 3 significant digits, thousands separators for big values."""
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(doc: dict[str, Any]) -> str:
    """The markdown results table of every scenario."""
    lines = [
        "| scenario | metric | value | baseline | baseline value | ratio | target | pass | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for scen in doc["scenarios"]:
        if scen["status"] != "ok":
            lines.append(f"| {scen['name']} | — | {scen['status']} | | | | | | |")
        for r in scen["rows"]:
            verdict = "" if r["passed"] is None else ("PASS" if r["passed"] else "**FAIL**")
            if r["margin"] is not None and r["passed"] is not None:
                verdict += f" ({r['margin']:.2f}x of target)"
            lines.append(
                f"| {scen['name']} | {r['metric']} | {fmt(r['value'])} {r['unit']} | {r['baseline']} | "
                f"{fmt(r['baseline_value'])} | {fmt(r['ratio'])} | {r['target']} | {verdict} | {r['note']} |"
            )
    return "\n".join(lines)


def notes(doc: dict[str, Any], link_prefix: str) -> str:
    """Per-scenario notes with links to plots."""
    out: list[str] = []
    for scen in doc["scenarios"]:
        out.append(f"#### {scen['title']}\n")
        out.append(f"Status: {scen['status']} ({scen['seconds']} s, run {scen.get('run_at', '')}).\n")
        out.extend(f"- {n}" for n in scen["notes"])
        out.extend(f"\n![{p['title']}]({link_prefix}{p['name']}.png)" for p in scen["plots"])
        out.append("")
    return "\n".join(out)


def write_all(out_dir: Path, doc: dict[str, Any], command: str, smoke: bool) -> None:
    """latest.json, latest.md, the PNGs, and (full runs) benchmarks/RESULTS.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc["machine"] = machine()
    doc["command"] = command
    doc["smoke"] = smoke
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    body = table(doc)
    (out_dir / "latest.md").write_text(body + "\n")
    for scen in doc["scenarios"]:
        for plot in scen["plots"]:
            render(plot, out_dir / f"{plot['name']}.png")
    if not smoke and out_dir.resolve() == RESULTS_MD.parent / "results":  # paths relative to the page
        old = RESULTS_MD.read_text() if RESULTS_MD.exists() else ""
        page = results_md(doc, out_dir, body, analysis_block(old))
        RESULTS_MD.write_text(keep_stream_part(old, page))


ANALYSIS_START = "<!-- analysis: hand-written, kept when the page is regenerated -->"
ANALYSIS_END = "<!-- /analysis -->"


def analysis_block(text: str) -> str:
    """The hand-written analysis between the markers of an existing RESULTS.md."""
    start, end = text.find(ANALYSIS_START), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ""
    return text[start + len(ANALYSIS_START) : end].strip()


def profiles_md(out_dir: Path, prefix: str, lines: int = 18) -> str:
    """The head of every saved profile, so misses can be explained from the page itself."""
    parts: list[str] = []
    for path in sorted((out_dir / "profiles").glob("*.txt")):
        head = "\n".join(path.read_text().splitlines()[:lines])
        parts.append(f"#### [{path.stem}]({prefix}profiles/{path.name})\n\n```\n{head}\n```\n")
    return "\n".join(parts)


STREAM_PART = ("<!-- stream-part -->", "<!-- /stream-part -->")


def keep_stream_part(old: str, page: str) -> str:
    """Carry the stream matrix part (written by `python -m benchmarks stream`) over to the new page."""
    start, end = old.find(STREAM_PART[0]), old.find(STREAM_PART[1])
    if start < 0 or end < start:
        return page
    part = old[start : end + len(STREAM_PART[1])]
    title_end = page.find("\n") + 1
    return page[:title_end] + "\n" + part + "\n\n" + page[title_end:]


def results_md(doc: dict[str, Any], out_dir: Path, body: str, analysis: str = "") -> str:
    """The committed summary page."""
    m = doc["machine"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    try:
        prefix = out_dir.resolve().relative_to(RESULTS_MD.parent).as_posix() + "/"
    except ValueError:
        prefix = out_dir.resolve().as_posix() + "/"
    return (
        "# Benchmark results\n\n"
        "## Offline suite\n\n"
        "Every figure sits beside a baseline measured in the same run; `ratio` = value / baseline. "
        "The machine is shared and noisy, so read the ratios, not the absolute numbers.\n\n"
        f"Command: `{doc['command']}`\n\n"
        "Usage: `.venv/bin/python -m benchmarks [--smoke] [--only NAME ...] [--out DIR]` (also "
        "`.venv/bin/python benchmarks/run.py`); names: core, batch, memory, suggestions (the stream figures "
        "come from `.venv/bin/python -m benchmarks stream`, above). A full run takes ~10 min on 2 cores; "
        "`--only` re-runs some scenarios and keeps the others' last results. "
        "`--smoke` (tiny sizes) is what `tests/test_benchmarks_smoke.py` runs.\n\n"
        f"Machine: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, {m['platform']}; "
        f"tansu: {m['tansu']}.\n\nPackages: {pkgs}.\n\n"
        "### Results\n\n"
        + body
        + "\n\n### Analysis\n\n"
        + ANALYSIS_START
        + "\n"
        + analysis
        + "\n"
        + ANALYSIS_END
        + "\n\n### Scenarios\n\n"
        + notes(doc, prefix)
        + "\n### Profiles (heads; full files linked)\n\n"
        + profiles_md(out_dir, prefix)
        + "\n"
    )


def render(plot: dict[str, Any], path: Path) -> None:
    """One PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=100)
    if plot["kind"] == "bar":
        _bars(ax, plot)
    else:
        for label, points in plot["series"].items():
            xs, ys = zip(*points, strict=True) if points else ((), ())
            ax.plot(xs, ys, marker="o", linestyle="--" if "baseline" in label else "-", label=label)
        if plot["logx"]:
            ax.set_xscale("log")
    if plot["logy"]:
        ax.set_yscale("log")
    ax.set_title(plot["title"])
    ax.set_xlabel(plot["xlabel"])
    ax.set_ylabel(plot["ylabel"])
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bars(ax: Any, plot: dict[str, Any]) -> None:
    cats = plot["categories"]
    width = 0.8 / max(1, len(plot["bars"]))
    for i, (label, values) in enumerate(plot["bars"].items()):
        ax.bar([c + i * width for c in range(len(cats))], values, width, label=label)
    ax.set_xticks([c + width * (len(plot["bars"]) - 1) / 2 for c in range(len(cats))], cats, fontsize=8)


def command_line() -> str:
    """How this run was started, in the form a reader can paste."""
    if not sys.argv:
        return "python -m benchmarks"
    first = Path(sys.argv[0])
    prog = "python -m benchmarks" if first.name == "__main__.py" else f"python benchmarks/{first.name}"
    return " ".join([prog, *sys.argv[1:]])
