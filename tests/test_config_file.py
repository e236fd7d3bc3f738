"""STREAMER_CONFIG_FILE: parsing, precedence over the environment, sources, diffs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from streamer.errors import ConfigError
from streamer.settings.file import (
    FILE_VARIABLE,
    RELOADABLE,
    diff_settings,
    origins,
    overlay,
    parse_config_text,
    read_config_file,
)
from streamer.settings.model import Settings, load_settings

KNOWN = Settings.model_fields
NAMES = sorted(n.upper() for n in KNOWN if n != "streamer_config_file")


def parse(text: str) -> dict[str, str]:
    return parse_config_text(text, KNOWN, "cfg").values


class TestParsing:
    """The accepted syntax."""

    def test_comments_blank_lines_and_spaces(self) -> None:
        """Comment lines, blank lines and spaces around names and values are ignored."""
        text = "# tuning\n\n   \n  JOB_TRENDING_TOPK = 7  \n\t# LOG_LEVEL=DEBUG\nLOG_LEVEL=warning\n"
        assert parse(text) == {"JOB_TRENDING_TOPK": "7", "LOG_LEVEL": "warning"}

    def test_quotes_escapes_and_inline_comments(self) -> None:
        """Double quotes with \\" and \\\\, literal single quotes, ` #` comments after values."""
        text = (
            'KAFKA_EVENTS_TOPIC="a \\"b\\" \\\\c # not a comment"  # a comment\n'
            "KAFKA_DLQ_TOPIC='x \\n #y'\n"
            "STREAMER_APP_ID=app#1 # the id\n"
            "CLICKHOUSE_DATABASE=\n"
            "REDIS_URL=redis://h:1/0?a=b\n"
        )
        assert parse(text) == {
            "KAFKA_EVENTS_TOPIC": 'a "b" \\c # not a comment',
            "KAFKA_DLQ_TOPIC": "x \\n #y",
            "STREAMER_APP_ID": "app#1",
            "CLICKHOUSE_DATABASE": "",
            "REDIS_URL": "redis://h:1/0?a=b",
        }

    def test_names_are_case_insensitive_like_the_environment(self) -> None:
        """`job_trending_topk=3` sets JOB_TRENDING_TOPK."""
        assert parse("job_trending_topk=3\n") == {"JOB_TRENDING_TOPK": "3"}

    @pytest.mark.parametrize(
        ("text", "line", "rule"),
        [
            ("JOB_TRENDING_TOPK=1\nnot a setting\n", 2, "expected NAME=VALUE"),
            ("=5\n", 1, "expected NAME=VALUE"),
            ("# c\n\n9X=1\n", 3, "expected NAME=VALUE"),
            ("JOB_TRENDING_TOPKK=3\n", 1, "unknown variable JOB_TRENDING_TOPKK"),
            ("LOG_LEVEL=INFO\nJOB_TRENDING_TOPK=1\nlog_level=DEBUG\n", 3, "already set on line 1"),
            ('KAFKA_EVENTS_TOPIC="open\n', 1, "unterminated quote"),
            ("KAFKA_EVENTS_TOPIC='a' b\n", 1, "text after the closing quote"),
            ("STREAMER_CONFIG_FILE=/x\n", 1, "cannot be set inside the file"),
        ],
    )
    def test_a_bad_line_is_one_error_naming_file_and_line(
        self, text: str, line: int, rule: str
    ) -> None:
        """The error names STREAMER_CONFIG_FILE, the path, the line number and the rule."""
        with pytest.raises(ConfigError) as info:
            parse_config_text(text, KNOWN, "/etc/streamer/streamer.conf")
        message = str(info.value)
        assert info.value.variable == FILE_VARIABLE
        assert f"/etc/streamer/streamer.conf line {line}: " in message and rule in message
        assert "\n" not in message

    def test_the_bad_line_text_is_not_echoed(self) -> None:
        """A line that may hold a secret (a forgotten `=`) is named by number, never shown."""
        with pytest.raises(ConfigError) as info:
            parse("KAFKA_SASL_PASSWORD hunter2\n")
        assert "hunter2" not in str(info.value)


VALUE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40)


def quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class TestParsingProperties:
    """Generated files."""

    @hsettings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(NAMES), VALUE_TEXT, max_size=8),
           st.lists(st.sampled_from(["", "# comment", "   ", "#X=1"]), max_size=5))
    def test_double_quoted_values_round_trip(self, values: dict[str, str], noise: list[str]) -> None:
        """Any value written double-quoted (escaped) reads back exactly, between any comments."""
        lines = [f"{name}={quoted(value)}" for name, value in values.items()]
        text = "\n".join(noise + lines + noise)
        assert parse(text) == values

    @hsettings(max_examples=200, deadline=None)
    @given(st.dictionaries(st.sampled_from(NAMES), VALUE_TEXT, max_size=8))
    def test_unquoted_values_are_stripped_and_cut_at_a_comment(self, values: dict[str, str]) -> None:
        """Unquoted: leading/trailing blanks stripped, everything from ` #` on is a comment."""
        text = "\n".join(f"{n}= {v}" for n, v in values.items())
        got = parse_or_error(text)
        if got is None:  # a value starting with a quote is read as a quoted value
            assert any(v.strip()[:1] in ("'", '"') for v in values.values())
            return
        for name, value in values.items():
            if value.strip()[:1] in ("'", '"'):
                continue
            want = value.strip()
            cut = next((i for i in range(1, len(want)) if want[i] == "#" and want[i - 1].isspace()),
                       None)
            assert got[name] == (want[:cut].rstrip() if cut is not None else want)

    @hsettings(max_examples=300, deadline=None)
    @given(st.text(max_size=200))
    def test_any_text_parses_or_fails_with_a_config_error(self, text: str) -> None:
        """The parser is total: a value, or a ConfigError naming a line, never another error."""
        try:
            parse(text)
        except ConfigError as exc:
            assert exc.variable == FILE_VARIABLE and " line " in exc.rule


def parse_or_error(text: str) -> dict[str, str] | None:
    try:
        return parse(text)
    except ConfigError:
        return None


class TestPrecedence:
    """The file over the environment over the defaults."""

    def test_file_wins_env_fills_in_defaults_last(self, tmp_path: Path) -> None:
        """A name in both: the file's value; a name only in the environment: the environment's."""
        path = tmp_path / "streamer.conf"
        path.write_text("JOB_TRENDING_TOPK=7\nLOG_LEVEL=debug\n")
        env = {FILE_VARIABLE: str(path), "JOB_TRENDING_TOPK": "9", "job_max_concurrent": "3",
               "log_level": "ERROR"}
        s = load_settings(env)
        assert (s.job_trending_topk, s.job_max_concurrent, s.log_level) == (7, 3, "DEBUG")
        assert s.job_suggestions_per_user == 20
        where = origins(env, read_config_file(env, KNOWN), KNOWN)
        assert where["JOB_TRENDING_TOPK"] == f"file {path}:1 (overrides the environment)"
        assert where["LOG_LEVEL"] == f"file {path}:2 (overrides the environment)"
        assert where["JOB_MAX_CONCURRENT"] == "environment"
        assert where["JOB_SUGGESTIONS_PER_USER"] == "default"

    def test_overlay_replaces_a_name_in_any_case(self) -> None:
        """An environment spelling `log_level` is replaced, not kept beside the file's LOG_LEVEL."""
        file = parse_config_text("LOG_LEVEL=DEBUG\n", KNOWN, "cfg")
        assert overlay({"log_level": "ERROR", "OTHER": "x"}, file) == {"OTHER": "x",
                                                                      "LOG_LEVEL": "DEBUG"}

    def test_no_file_is_the_plain_environment(self) -> None:
        """STREAMER_CONFIG_FILE empty or unset: the environment alone, as before."""
        assert read_config_file({FILE_VARIABLE: " "}, KNOWN) is None
        assert load_settings({FILE_VARIABLE: "", "JOB_TRENDING_TOPK": "4"}).job_trending_topk == 4

    def test_a_missing_file_names_the_variable_and_path(self, tmp_path: Path) -> None:
        """Unreadable file: ConfigError on STREAMER_CONFIG_FILE with the path."""
        missing = tmp_path / "nope.conf"
        with pytest.raises(ConfigError) as info:
            load_settings({FILE_VARIABLE: str(missing)})
        assert info.value.variable == FILE_VARIABLE and str(missing) in info.value.rule

    def test_values_from_the_file_follow_the_same_rules(self, tmp_path: Path) -> None:
        """A bad value in the file is rejected by name exactly like one in the environment."""
        path = tmp_path / "c.conf"
        path.write_text("JOB_TRENDING_TOPK=0\n")
        with pytest.raises(ConfigError) as info:
            load_settings({FILE_VARIABLE: str(path)})
        assert info.value.variable == "JOB_TRENDING_TOPK" and "whole number > 0" in info.value.rule

    def test_check_config_shows_sources_and_bad_file_exits_2(self, tmp_path: Path) -> None:
        """check-config: a source per line; a bad line: exit 2, one stderr line naming the line."""
        path = tmp_path / "c.conf"
        path.write_text("# x\nJOB_TRENDING_TOPK=7\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JOB_", "STREAMER_"))}
        env.update({FILE_VARIABLE: str(path), "JOB_MAX_CONCURRENT": "3", "COLUMNS": "250",
                    "STREAMER_DATA_DIR": str(tmp_path)})
        cmd = [sys.executable, "-m", "streamer", "check-config"]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        rows = {line.split("=", 1)[0]: line for line in out.stdout.splitlines() if "=" in line}
        assert rows["JOB_TRENDING_TOPK"] == f"JOB_TRENDING_TOPK=7  # file {path}:2"
        assert "environment" in rows["JOB_MAX_CONCURRENT"]
        assert "default" in rows["JOB_SUGGESTIONS_PER_USER"]
        path.write_text("JOB_TRENDING_TOPK=7\nJOB_TRENDING_TOPK 8\n")
        bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2
        assert bad.stderr.splitlines() == [
            f"streamer: invalid configuration: {FILE_VARIABLE}: {path} line 2: expected NAME=VALUE"]


class TestDiff:
    """Which changes a reload applies and which it only reports."""

    def test_split_into_reloadable_and_restart_only(self) -> None:
        """Top-K is applied; the topic and the window length need a restart; equal is unchanged."""
        old = load_settings({})
        new = load_settings({"JOB_TRENDING_TOPK": "3", "KAFKA_EVENTS_TOPIC": "t2",
                             "JOB_TRENDING_WINDOW_HOURS": "2", "LOG_LEVEL": "INFO"})
        diff = diff_settings(old, new, KNOWN)
        assert diff.reloadable == {"job_trending_topk": (50, 3)}
        assert set(diff.restart_only) == {"kafka_events_topic", "job_trending_window_hours"}
        assert diff.describe() == "JOB_TRENDING_TOPK 50 -> 3"
        assert diff_settings(old, load_settings({}), KNOWN).reloadable == {}

    def test_secrets_are_masked_in_descriptions(self) -> None:
        """A URL password never appears in a reload log line."""
        old = load_settings({})
        new = load_settings({"REDIS_URL": "redis://u:topsecret@h:1/0"})
        text = diff_settings(old, new, KNOWN).describe(["redis_url"])
        assert "topsecret" not in text and "REDIS_URL" in text

    def test_reloadable_names_are_settings(self) -> None:
        """Every reloadable name is a field; connection, topic, window and store ones are not."""
        assert set(RELOADABLE) <= set(KNOWN)
        assert not {"redis_url", "kafka_events_topic", "streamer_app_id", "job_trending_window_hours",
                    "streamer_table_store", "streamer_web_port"} & RELOADABLE
