"""Run the offline benchmark suite: `python -m benchmarks [--smoke] [--only NAME] [--out DIR]`."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from benchmarks import report
from benchmarks.common import Context, ScenarioResult

# The stream figures come from `python -m benchmarks stream` (benchmarks/stream_matrix.py).
SCENARIOS: dict[str, str] = {
    "core": "benchmarks.core_cost",
    "memory": "benchmarks.memory",
    "batch": "benchmarks.batch_vs_stream",
    "suggestions": "benchmarks.suggestions",
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (used by the tests)")
    parser.add_argument("--only", action="append", choices=sorted(SCENARIOS), help="run just these")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results directory")
    return parser.parse_args(argv)


def run_one(name: str, ctx: Context) -> ScenarioResult:
    """Import and run a scenario; an exception becomes an `error:` status, not a crash."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(SCENARIOS[name])
        scenario: Callable[[Context], ScenarioResult] = module.run
        result = scenario(ctx)
    except Exception as exc:
        result = ScenarioResult(name, name, status=f"error: {type(exc).__name__}: {exc}")
        result.notes.append("```\n" + traceback.format_exc()[-3000:] + "\n```")
    result.seconds = time.perf_counter() - start
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected scenarios with progress; write results; exit 1 if a scenario crashed."""
    args = parse_args(argv)
    names = [n for n in SCENARIOS if not args.only or n in args.only]
    console = Console(stderr=True)
    results: list[ScenarioResult] = []
    facts: dict[str, float] = {}  # figures one scenario hands a later one
    with (
        tempfile.TemporaryDirectory(prefix="streamer-bench-") as tmp,
        Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[scenario]:<12}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        ) as progress,
    ):
        task = progress.add_task("starting", total=len(names), scenario="")
        for name in names:
            progress.update(task, scenario=name, description="")
            ctx = Context(
                args.smoke,
                args.out,
                step=lambda msg: progress.update(task, description=msg),
                work_dir=Path(tmp),
                facts=facts,
            )
            result = run_one(name, ctx)
            results.append(result)
            progress.advance(task)
            console.log(f"{name}: {result.status} in {result.seconds:.1f}s")
    _write(args, results)
    crashed = [r.name for r in results if r.status.startswith("error")]
    if crashed:
        console.print(f"[red]scenarios crashed: {', '.join(crashed)}")
    return 1 if crashed else 0


def _write(args: argparse.Namespace, results: list[ScenarioResult]) -> None:
    latest = args.out / "latest.json"
    previous = json.loads(latest.read_text()) if latest.exists() and args.only else None
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    fresh = [dict(r.to_json(), run_at=stamp) for r in results]
    doc = report.merge(previous, fresh)
    report.write_all(args.out, doc, report.command_line(), args.smoke)
    print(report.table(doc))


if __name__ == "__main__":
    sys.exit(main())
