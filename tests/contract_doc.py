"""Reads docs/CONTRACT.md and README.md tables, so docs-consistency tests check one against the other."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = ROOT / "docs" / "CONTRACT.md"
README = ROOT / "README.md"

# Contract names a change in progress has not built yet; each is checked as soon as it is a
# Settings field (variables) or a CLI command (commands). Empty: every contract name is built.
PENDING_VARIABLES: set[str] = set()
PENDING_COMMANDS: set[str] = set()


def section(text: str, title: str) -> str:
    """The body of the `## title` section."""
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def variable_rows(table_text: str) -> dict[str, str]:
    """`| `A` / `B` | `1` / `2` | ...` rows -> {"A": "`1`", "B": "`2`"} (one default for all when
    the default cell is not split the same way)."""
    out: dict[str, str] = {}
    for line in table_text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([A-Z][A-Z0-9_]+)`", cells[0])
        defaults = [d.strip() for d in cells[1].split(" / ")]
        if len(defaults) != len(names):
            defaults = [cells[1]] * len(names)
        out.update(zip(names, defaults, strict=True))
    return out


def contract_variables() -> dict[str, str]:
    """Every variable of the contract's Environment table and its default cell."""
    return variable_rows(section(CONTRACT.read_text(), "Environment"))


def readme_variables() -> dict[str, str]:
    """Every variable of README's configuration table and its default cell."""
    return variable_rows(section(README.read_text(), "Configuration"))


def commands(text: str) -> set[str]:
    """Sub-command names in a Commands table (`| `streamer NAME ...` |` rows)."""
    return set(re.findall(r"^\| `streamer ([a-z-]+)", section(text, "Commands"), re.M))
