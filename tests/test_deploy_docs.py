"""README.md and docs/ stay in step with docs/CONTRACT.md and with the metrics and settings they
document."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from prometheus_client.metrics_core import Metric

from streamer.cli import _parser
from streamer.ops.metrics import REGISTRY
from streamer.settings.model import Settings
from tests.contract_doc import (
    CONTRACT,
    PENDING_COMMANDS,
    PENDING_VARIABLES,
    README,
    commands,
    contract_variables,
    readme_variables,
)

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "docs" / "OPERATIONS.md"
# Variables of the ClickHouse server container in docker-compose.yml, not of streamer.
FOREIGN_ENV = {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}
OUR_PREFIXES = ("STREAMER_", "JOB_", "KAFKA_", "CLICKHOUSE_", "REDIS_", "RECONCILE_", "LOG_")


def exposed_name(family: Metric) -> str:
    """The name Prometheus scrapes (counters get `_total`)."""
    return f"{family.name}_total" if family.type == "counter" else family.name


class TestOperationsDoc:
    """The operations guide names real metrics and real variables."""

    def test_every_metric_is_documented(self) -> None:
        """Each metric in streamer/ops/metrics.py has a row in the metrics table."""
        text = OPS.read_text()
        missing = [exposed_name(f) for f in REGISTRY.collect() if f"`{exposed_name(f)}`" not in text]
        assert not missing, f"document these in docs/OPERATIONS.md: {missing}"

    def test_documented_metrics_exist(self) -> None:
        """Every metric name in the table is one the process serves."""
        text = OPS.read_text()
        rows = set(re.findall(r"^\| `(streamer_[a-z_]+)` \|", text, re.M))
        served = {exposed_name(f) for f in REGISTRY.collect()}
        assert rows and rows <= served, rows - served

    def test_documented_variables_are_settings(self) -> None:
        """Every streamer variable the guide mentions is a Settings field."""
        known = {name.upper() for name in Settings.model_fields}
        mentioned = set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`", OPS.read_text()))
        ours = {m for m in mentioned if m.startswith(OUR_PREFIXES)} - FOREIGN_ENV
        assert ours and ours <= known, ours - known

    def test_every_manifest_is_described(self) -> None:
        """Each file in k8s/ appears in the guide's table."""
        text = OPS.read_text()
        for path in (ROOT / "k8s").glob("*.yaml"):
            assert f"`{path.name}`" in text, path.name


def cli_commands() -> set[str]:
    """The sub-commands the `streamer` parser knows."""
    sub = next(a for a in _parser()._actions if a.dest == "command")
    return set(sub.choices or {})


def landed(names: set[str], pending: set[str], present: set[str]) -> set[str]:
    """The names to check now: all but the pending ones that the code does not have yet."""
    return {n for n in names if n not in pending or n in present}


class TestReadmeAgainstContract:
    """README.md documents the contract: its commands and its variables with their defaults."""

    def test_every_contract_variable_is_in_the_readme_table(self) -> None:
        """Each variable of the contract's Environment table has a README configuration row."""
        known = {name.upper() for name in Settings.model_fields}
        wanted = landed(set(contract_variables()), PENDING_VARIABLES, known)
        missing = wanted - set(readme_variables())
        assert len(wanted) >= 18 and not missing, f"add to README.md's configuration table: {missing}"

    def test_readme_defaults_are_the_contract_defaults(self) -> None:
        """A variable in both tables has the same default in both."""
        contract, readme = contract_variables(), readme_variables()
        differ = {n: (contract[n], readme[n]) for n in contract.keys() & readme.keys()
                  if contract[n] != readme[n]}
        assert not differ, f"README default differs from docs/CONTRACT.md: {differ}"

    def test_every_contract_variable_is_a_setting(self) -> None:
        """The code reads every contract variable (a Settings field per name)."""
        known = {name.upper() for name in Settings.model_fields}
        wanted = landed(set(contract_variables()), PENDING_VARIABLES, known)
        assert wanted <= known, wanted - known

    def test_every_contract_command_is_in_the_readme_and_the_cli(self) -> None:
        """Each command of the contract is a sub-command and has a README row."""
        present = cli_commands()
        wanted = landed(commands(CONTRACT.read_text()), PENDING_COMMANDS, present)
        assert len(wanted) >= 6
        assert wanted <= present, wanted - present
        assert wanted <= commands(README.read_text()), wanted - commands(README.read_text())

    def test_the_contract_is_linked_from_the_readme(self) -> None:
        """Readers find the contract from the README."""
        assert "docs/CONTRACT.md" in README.read_text()


# Absolute paths of a development machine (work tree, home, interpreter). The image's own
# /home/streamer (Dockerfile) is a path inside the container, not of a machine.
MACHINE_PATH = re.compile(r"/[w]ork/|/[r]oot/|/[h]ome/(?!streamer\b)|\.[p]yenv\b")  # [x]: not itself
SKIP_DIRS = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__",
             "benchmarks", ".streamer", ".hypothesis", "build", "dist"}


def repository_text_files() -> list[Path]:
    """Files git tracks (or would track), outside benchmarks/; local state is never scanned."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split("\n")
    out = []
    for name in filter(None, listed):
        rel = Path(name)
        if not SKIP_DIRS & set(rel.parts) and (ROOT / rel).is_file():
            out.append(ROOT / rel)
    return out


def test_no_machine_paths_in_the_repository() -> None:
    """The repository speaks of itself: no absolute path of the machine it was written on."""
    found = []
    for path in repository_text_files():
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        found += [f"{path.relative_to(ROOT)}:{n}" for n, line in enumerate(text.splitlines(), 1)
                  if MACHINE_PATH.search(line)]
    assert not found, found
