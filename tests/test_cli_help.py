"""What a newcomer reads first: `--help`, `--version`, and `check-config` through a pipe."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from streamer import __version__
from streamer.cli import _parser
from streamer.settings.model import Settings
from tests.test_config import run_streamer


def subparsers() -> dict[str, argparse.ArgumentParser]:
    """Sub-command name -> its parser."""
    sub = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_command_says_what_it_does_and_where_to_read(name: str) -> None:
    """A description beyond the one-line help, the variables that drive it, a pointer to docs."""
    text = subparsers()[name].format_help()
    assert "Driven by:" in text or "More:" in text, text
    assert "check-config" in text and "More: " in text


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_has_help_and_says_its_default(name: str) -> None:
    """Each option has help text; one with a value (not a flag) names its default."""
    for action in subparsers()[name]._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{name} {action.option_strings}"
        if action.nargs is None and action.default is not None and not action.const:
            assert "default" in action.help, f"{name} {action.option_strings}: {action.help}"


def test_version() -> None:
    """`streamer --version` prints the package version, exit 0."""
    proc = run_streamer(["--version"])
    assert proc.returncode == 0 and proc.stdout.strip() == f"streamer {__version__}"


def test_sample_help_lists_its_options_with_defaults() -> None:
    """The four sizes with their defaults, and the two safety flags."""
    proc = run_streamer(["sample", "--help"])
    assert proc.returncode == 0
    for text in ("--events", "(default: 50000)", "--avg-follows", "(default: 20)", "--replace",
                 "--allow-server", "CLICKHOUSE_URL"):
        assert text in proc.stdout, text


@pytest.mark.parametrize("value", ["-5", "0", "ten", "1.5"])
def test_sample_sizes_must_be_positive(value: str) -> None:
    """`sample --events -5`: exit 2 before anything runs, one line naming the option."""
    proc = run_streamer(["sample", "--events", value])
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "--events" in line and "whole number > 0" in line


LONG_ENV = {  # values longer than any terminal line
    "KAFKA_BOOTSTRAP_SERVERS": "b-1.nova.abcdefghijklmnop.c3.kafka.eu-west-1.amazonaws.com:9096,"
                               "b-2.nova.abcdefghijklmnop.c3.kafka.eu-west-1.amazonaws.com:9096",
    "CLICKHOUSE_URL": "https://streamer:s3cret@clickhouse.analytics.internal.example:8443",
    "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "svc",
    "KAFKA_SASL_PASSWORD": "hunter2",
}


class TestCheckConfigFormats:
    """`check-config` output survives a pipe: never a table, never cut, secrets masked."""

    def test_text_is_one_full_line_per_variable(self, tmp_path: Path) -> None:
        """NAME=VALUE  # source, whole values whatever the width, passwords masked."""
        proc = run_streamer(["check-config"], COLUMNS="40", STREAMER_DATA_DIR=str(tmp_path),
                            **LONG_ENV)
        assert proc.returncode == 0, proc.stderr
        assert "s3cret" not in proc.stdout and "hunter2" not in proc.stdout
        rows = dict(line.split("=", 1) for line in proc.stdout.splitlines()
                    if not line.startswith("#"))
        assert rows["KAFKA_BOOTSTRAP_SERVERS"] == f"{LONG_ENV['KAFKA_BOOTSTRAP_SERVERS']}  # environment"
        assert rows["CLICKHOUSE_URL"] == (
            "https://streamer:***@clickhouse.analytics.internal.example:8443  # environment")
        assert {n.upper() for n in Settings.model_fields} <= set(rows)

    def test_json(self, tmp_path: Path) -> None:
        """One JSON object: value and source per variable, numbers as numbers, secrets masked."""
        proc = run_streamer(["check-config", "--format", "json"], STREAMER_DATA_DIR=str(tmp_path),
                            **LONG_ENV)
        assert proc.returncode == 0, proc.stderr
        doc = orjson.loads(proc.stdout)
        got = doc["settings"]
        assert doc["valid"] is True
        assert got["JOB_TRENDING_TOPK"] == {"value": 50, "source": "default"}
        assert got["KAFKA_BOOTSTRAP_SERVERS"]["value"] == LONG_ENV["KAFKA_BOOTSTRAP_SERVERS"]
        assert "hunter2" not in proc.stdout and "s3cret" not in proc.stdout


def test_a_command_without_an_entry_still_gets_a_description() -> None:
    """A sub-command added later without a DESCRIPTIONS entry shows its help line and the pointers."""
    from streamer.cli_help import DOCS, describe

    text = describe("newcmd", "does a new thing")
    assert text.startswith("does a new thing") and DOCS in text and "check-config" in text
