"""Every page of the documentation names only what exists: commands and their options, environment
variables, Redis keys and meta fields; long pages carry a table of contents that matches them.

Extends tests/test_deploy_docs.py (README against the contract, OPERATIONS' metrics) to every
page. The code is the reference: a name a page documents must be built, parsed or read by it.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.cli import _parser
from streamer.core import payloads
from streamer.core.payloads import TrendingMeta
from streamer.core.window import Window
from streamer.settings.model import Settings
from tests.docs_index import LONG_PAGE_LINES, current_toc, toc

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "RELIABILITY.md",
                *(ROOT / "docs").glob("*.md")])
OUR_PREFIXES = ("STREAMER_", "JOB_", "KAFKA_", "CLICKHOUSE_", "REDIS_", "RECONCILE_", "LOG_",
                "HOST_")
GLOBAL_OPTIONS = {"--help", "-h", "--version"}


def code_texts(text: str) -> Iterator[str]:
    """The code of a page: each inline code span and each line of a fenced block (no comment)."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            yield line.split(" #", 1)[0]
        else:
            yield from re.findall(r"`([^`\n]+)`", line)


def page_id(path: Path) -> str:
    """A page's name in test ids."""
    return str(path.relative_to(ROOT))


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Sub-command name -> its parser."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def code_literals() -> str:
    """Every source file of the package, concatenated (for "is this name in the code")."""
    return "\n".join(p.read_text() for p in sorted((ROOT / "streamer").rglob("*.py")))


# `streamer NAME ...` as typed: at the start of the code, after a venv's bin/, `python -m`,
# `kubectl exec ... --` or `docker compose exec|run --rm SERVICE`.
INVOCATION = re.compile(r"(?:^|bin/|-m |-- |(?:exec|run --rm) [\w-]+ )streamer ([a-z][a-z-]*)([^|;&]*)")


def invocations(text: str) -> Iterator[tuple[str, str]]:
    """(sub-command, rest of the line) of every `streamer` invocation in a page's code."""
    for code in code_texts(text):
        for match in INVOCATION.finditer(code.strip()):
            yield match.group(1), match.group(2)


def test_the_pages_show_many_invocations() -> None:
    """The check below sees the commands the pages document (it would pass on none)."""
    seen = {name for page in PAGES for name, _ in invocations(page.read_text())}
    assert seen >= {"worker", "jobs", "schema", "check-config", "sample", "demo", "top", "sink"}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_documented_commands_and_options_exist(page: Path) -> None:
    """`streamer NAME --option` in code on any page: NAME is a sub-command with that option."""
    commands = subcommands()
    wrong = []
    for name, rest in invocations(page.read_text()):
        if name not in commands:
            wrong.append(f"streamer {name}")
            continue
        known = {s for a in commands[name]._actions for s in a.option_strings}
        wrong += [f"streamer {name} {opt}" for opt in re.findall(r"(?<![\w-])--?[a-z][a-z-]*", rest)
                  if opt not in known | GLOBAL_OPTIONS]
    assert not wrong, f"{page_id(page)} documents what the CLI does not have: {wrong}"


@pytest.mark.parametrize("page", [ROOT / "README.md", ROOT / "docs" / "CONTRACT.md"], ids=page_id)
def test_every_command_and_option_is_in_the_command_tables(page: Path) -> None:
    """The other direction, for the two command tables: each sub-command has a row that shows
    each of its options."""
    table = page.read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `streamer ([a-z-]+)[^\n]*", table, re.M)}
    missing = []
    for name, parser in subcommands().items():
        options = [o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help"]
        missing += [f"{name} {o}" for o in ["", *options] if name not in rows or o not in rows[name]]
    assert not missing, f"{page_id(page)}'s Commands table lacks: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_documented_variables_exist(page: Path) -> None:
    """Each of our variables a page names is a setting, a variable the code reads by name, or a
    docker-compose.yml variable."""
    settings = {name.upper() for name in Settings.model_fields}
    compose = (ROOT / "docker-compose.yml").read_text()
    source = code_literals()
    mentioned = set()
    for code in code_texts(page.read_text()):
        mentioned |= set(re.findall(r"(?<![\w{-])([A-Z][A-Z0-9]*_[A-Z0-9_]+)(?![\w}])", code))
    ours = {m for m in mentioned if m.startswith(OUR_PREFIXES)}
    unknown = {m for m in ours - settings if f'"{m}"' not in source and m not in compose}
    assert not unknown, f"{page_id(page)} names variables the code does not know: {unknown}"


def key_patterns() -> list[re.Pattern[str]]:
    """Every Redis key payloads.py builds, as a pattern whose arguments match a placeholder
    (`{user_id}`, `<p>`, `{APP_ID}`) or a value."""
    marker = "\x00"
    value = r"(?:\{[A-Za-z_]+\}|<[a-z]+>|[A-Za-z0-9_.-]+)"
    locks = [payloads.trending_lock_key(1, "merge"), payloads.suggestions_run_lock_key()]
    out = []
    for name, fn in inspect.getmembers(payloads, inspect.isfunction):
        # lock_key / guard_lock_key are the generic builders behind the named locks
        if not name.endswith("_key") or name in ("lock_key", "guard_lock_key"):
            continue
        params = list(inspect.signature(fn).parameters)
        for lock in locks if "lock" in params else [""]:
            args = [lock if p == "lock" else marker for p in params]
            out.append(re.escape(fn(*args)).replace(re.escape(marker), value))
            if name in ("suggestions_snapshot_key", "suggestions_short_key"):  # no run token: the last run's
                out.append(re.escape(fn(marker)).replace(re.escape(marker), value))
        required = [p for p in inspect.signature(fn).parameters.values() if p.default is p.empty]
        if len(required) < len(params) and "lock" not in params:  # optional parts left out
            out.append(re.escape(fn(*[marker] * len(required))).replace(re.escape(marker), value))
    return [re.compile(p) for p in out]


# Keys an older release wrote, named only in OPERATIONS' upgrade notes (what to delete).
LEGACY_KEYS = {
    "nova:cache:{suggested_users}:…",
    "nova:cache:{suggested_users}:<STREAMER_APP_ID>:state",
    "nova:cache:{suggested_users}:<STREAMER_APP_ID>:snapshot",
}


def documented_keys(text: str) -> set[str]:
    """Redis key names in a page's code: `nova:...` or `{nova:...}...`, whole spans only."""
    return {code.strip() for code in code_texts(text)
            if re.fullmatch(r"\{?<?[a-z]*>?\}?:?\{?nova:[^\s,]*", code.strip())}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_documented_redis_keys_exist(page: Path) -> None:
    """Each key a page names is one payloads.py builds; `prefix*`/`prefix…` and a bare hash
    tag must begin a real key."""
    patterns = key_patterns()
    examples = [payloads.trending_lock_key(1, "merge"), payloads.suggestions_key(1),
                payloads.partial_key("APP", 1, 0), payloads.trending_meta_key(1),
                payloads.suggestions_state_key("{APP_ID}")]
    wrong = []
    for key in documented_keys(page.read_text()) - LEGACY_KEYS:
        stem = key.rstrip("*…")
        if stem != key or (key.startswith("{") and key.endswith("}")):
            ok = any(e.startswith(stem) for e in examples)
        else:
            ok = any(p.fullmatch(key) for p in patterns)
        if not ok:
            wrong.append(key)
    assert not wrong, f"{page_id(page)} names Redis keys the code never builds: {wrong}"


def test_meta_fields_in_the_readme_are_what_every_writer_writes() -> None:
    """README's list of meta fields equals the fields every publisher writes (TrendingMeta)."""
    text = (ROOT / "README.md").read_text()
    line = text.split("- `nova:cache:trending:1h:meta`:", 1)[1].split("Written in", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)`", line)) - {"stream", "clickhouse", "events", "people"}
    written = set(TrendingMeta(0, Window(0, 60_000), "stream", [0], ttl_ms=1).to_payload())
    assert documented == written, (documented ^ written)


def test_meta_fields_in_the_modes_table_are_written_somewhere() -> None:
    """Each writer-specific meta field docs/MODES.md names is a key the code writes."""
    text = (ROOT / "docs" / "MODES.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| **")]
    fields = {f for row in rows for f in re.findall(r"`([a-z_]+)(?:`|:)", row.split("|")[-2])}
    source = code_literals()
    missing = {f for f in fields - {"stream", "clickhouse", "drift", "true"}
               if f'"{f}"' not in source}
    assert len(fields) >= 5 and not missing, missing


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_long_pages_have_a_matching_table_of_contents(page: Path) -> None:
    """A page over LONG_PAGE_LINES lines lists its sections; the list matches its headings."""
    text = page.read_text()
    written = current_toc(text)
    if len(text.splitlines()) <= LONG_PAGE_LINES and not written:
        return
    depth = 3 if any(line.startswith("  - ") for line in written.splitlines()) else 2
    assert written == toc(text, depth), (
        f"{page_id(page)}: regenerate its ## Contents: python -m tests.docs_index {page_id(page)}")
