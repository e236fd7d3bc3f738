"""STREAMER_CONFIG_FILE: parsing of KEY=VALUE lines, precedence over the environment, diffs.

Precedence, highest first: the file, the environment, the defaults. The file wins because it
is the source that can change while the process runs (a ConfigMap volume is updated in place,
the environment of a running process never is): a value the operator edits in the file must
not be shadowed by a stale copy of the same name in the environment.

Syntax (a subset of the `.env` convention):
- blank lines and lines whose first non-blank character is `#` are ignored;
- `NAME=VALUE`, with spaces around `NAME` and `VALUE` stripped; `NAME` is a setting's variable
  name (any case); each name at most once;
- an unquoted value ends at ` #` (a comment after whitespace);
- `"..."` allows the escapes `\\"` and `\\\\`; `'...'` is taken literally; after the closing
  quote only a comment may follow.

Any other line is an error naming the file and the line number (never the line's text: it may
hold a secret). Unknown names are errors too: a typo must not silently leave a setting as it was.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.errors import ConfigError, raise_all
from streamer.redaction import mask_url

FILE_VARIABLE = "STREAMER_CONFIG_FILE"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")

# Settings applied at the next tick / run / batch without a restart (field names). Everything
# else (connections, topics, app id, window length, table store, ports, pool sizes) needs one.
RELOADABLE: frozenset[str] = frozenset({
    "job_trending_interval_sec",
    "job_trending_topk",
    "job_suggestion_interval_sec",
    "job_suggestion_batch_size",
    "job_suggestions_per_user",
    "job_suggestion_active_days",
    "job_reconcile_interval_sec",
    "reconcile_drift_threshold",
    "reconcile_drift_runs",
    "reconcile_min_overlap",
    "streamer_sink_batch_size",
    "streamer_sink_batch_bytes",
    "streamer_sink_flush_ms",
    "streamer_fallback_after_sec",
    "log_level",
})


@dataclass(frozen=True)
class FileValues:
    """The parsed file: upper-case name -> raw value, and the line each came from."""

    path: str
    values: dict[str, str]
    lines: dict[str, int]


def _value(rest: str) -> str | None:
    """The value of `rest` (text after `=`); None when a quote is unterminated or trailed."""
    rest = rest.strip()
    if not rest or rest[0] not in "\"'":
        cut = re.search(r"\s#", rest)
        return (rest[: cut.start()] if cut else rest).rstrip()
    quote, i = rest[0], 1
    out: list[str] = []
    while i < len(rest):
        ch = rest[i]
        if ch == quote:
            tail = rest[i + 1 :].strip()
            return "".join(out) if not tail or tail.startswith("#") else None
        if ch == "\\" and quote == '"' and i + 1 < len(rest) and rest[i + 1] in '"\\':
            i += 1
            ch = rest[i]
        out.append(ch)
        i += 1
    return None


def parse_config_text(text: str, known: Collection[str], path: str = "<text>",
                      errors: list[ConfigError] | None = None) -> FileValues:
    """Parse KEY=VALUE lines; raise ConfigError(s) naming the file and line of every bad one
    (with `errors`: append them there and return the good lines, so values are checked too)."""
    names = {n.upper() for n in known}
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    found: list[ConfigError] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, eq, rest = stripped.partition("=")
        name = name.strip().upper()
        value = _value(rest)
        rule = _line_problem(name, bool(eq), value, names, lines)
        if rule:
            found.append(ConfigError(FILE_VARIABLE, f"{path} line {number}: {rule}"))
        elif value is not None:
            values[name], lines[name] = value, number
    if errors is None:
        raise_all(found)
    else:
        errors += found
    return FileValues(path, values, lines)


def _line_problem(name: str, eq: bool, value: str | None, names: Collection[str],
                  seen: Mapping[str, int]) -> str:
    """What is wrong with one `NAME=VALUE` line ('' when nothing)."""
    if not eq or not _NAME.fullmatch(name):
        return "expected NAME=VALUE"
    if name == FILE_VARIABLE:
        return f"{FILE_VARIABLE} cannot be set inside the file"
    if name not in names:
        close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.7)
        return f"unknown variable {name}" + (f" (did you mean {close[0]}?)" if close else "")
    if name in seen:
        return f"{name} already set on line {seen[name]}"
    if value is None:
        return f"{name}: unterminated quote or text after the closing quote"
    return ""


def file_path(env: Mapping[str, str]) -> str:
    """The configured file path ('' when none), the name looked up case-insensitively."""
    for key, value in env.items():
        if key.upper() == FILE_VARIABLE:
            return value.strip()
    return ""


def read_config_file(env: Mapping[str, str], known: Collection[str],
                     errors: list[ConfigError] | None = None) -> FileValues | None:
    """Read and parse the file STREAMER_CONFIG_FILE names; None when the variable is empty
    (`errors`: where bad lines go instead of raising, see parse_config_text)."""
    path = file_path(env)
    if not path:
        return None
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(FILE_VARIABLE, f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(FILE_VARIABLE, f"{path} is not UTF-8 text") from None
    return parse_config_text(text, known, path, errors)


def overlay(env: Mapping[str, str], file: FileValues | None) -> dict[str, str]:
    """The environment with every name the file sets replaced by the file's value."""
    if file is None:
        return dict(env)
    merged = {k: v for k, v in env.items() if k.upper() not in file.values}
    merged.update(file.values)
    return merged


def origins(
    env: Mapping[str, str], file: FileValues | None, known: Collection[str]
) -> dict[str, str]:
    """Upper-case name -> where its effective value comes from (file:line, environment, default)."""
    in_env = {k.upper() for k in env}
    out: dict[str, str] = {}
    for name in sorted(n.upper() for n in known):
        if file is not None and name in file.values:
            where = f"file {file.path}:{file.lines[name]}"
            out[name] = where + (" (overrides the environment)" if name in in_env else "")
        else:
            out[name] = "environment" if name in in_env else "default"
    return out


def shown(name: str, value: Any) -> str:
    """How a value appears in a reload log line: secrets and URL passwords masked."""
    if any(word in name.upper() for word in _SECRET_WORDS):
        return "***"
    text = str(value)
    return repr(mask_url(text) if "://" in text else value)


@dataclass(frozen=True)
class ConfigDiff:
    """What differs between the running and a newly loaded configuration, by field name."""

    reloadable: dict[str, tuple[Any, Any]]  # name -> (running, new): applied on reload
    restart_only: dict[str, tuple[Any, Any]]  # name -> (running, new): reported, not applied

    def describe(self, names: Collection[str] | None = None) -> str:
        """`NAME old -> new, ...` for the given (default: reloadable) fields, values masked."""
        chosen = self.reloadable if names is None else {n: self.restart_only[n] for n in names}
        return ", ".join(f"{n.upper()} {shown(n, a)} -> {shown(n, b)}"
                         for n, (a, b) in sorted(chosen.items()))


def diff_settings(running: Any, new: Any, fields: Collection[str]) -> ConfigDiff:
    """Compare two Settings field by field; split the changes into reloadable and restart-only."""
    reloadable: dict[str, tuple[Any, Any]] = {}
    restart: dict[str, tuple[Any, Any]] = {}
    for name in fields:
        old, value = getattr(running, name), getattr(new, name)
        if old != value:
            (reloadable if name in RELOADABLE else restart)[name] = (old, value)
    return ConfigDiff(reloadable, restart)
