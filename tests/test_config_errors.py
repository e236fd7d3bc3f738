"""Configuration errors for people: every one at once, where it came from, in words, and every
check that needs no network made before anything connects."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.errors import ConfigError, ConfigErrors
from streamer.settings.file import FILE_VARIABLE
from streamer.settings.model import load_settings
from tests.test_config import run_streamer


def all_errors(env: dict[str, str]) -> list[ConfigError]:
    """The errors load_settings reports for env (fails when it accepts it)."""
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    return list(getattr(info.value, "errors", [info.value]))


class TestAllAtOnce:
    """Every bad variable is named, once, in the order of the configuration table."""

    def test_every_bad_value_is_reported(self) -> None:
        """Bad integers, a bad choice and a bad URL: one error each, in field order."""
        errors = all_errors({"LOG_FORMAT": "xml", "JOB_TRENDING_TOPK": "0", "REDIS_URL": "http://x",
                             "STREAMER_WEB_PORT": "70000"})
        assert [e.variable for e in errors] == [
            "REDIS_URL", "STREAMER_WEB_PORT", "JOB_TRENDING_TOPK", "LOG_FORMAT"]

    def test_one_error_stays_a_plain_config_error(self) -> None:
        """A single problem is raised as itself (code that expects one keeps working)."""
        with pytest.raises(ConfigError) as info:
            load_settings({"JOB_TRENDING_TOPK": "0"})
        assert not isinstance(info.value, ConfigErrors)
        assert info.value.variable == "JOB_TRENDING_TOPK"

    def test_kafka_combinations_are_all_reported(self) -> None:
        """SASL credentials without SASL and a certificate without a key: both named."""
        errors = all_errors({"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
                             "KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"})
        assert {e.variable for e in errors} == {"KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"}

    def test_as_a_process_one_line_each(self) -> None:
        """`check-config`: exit 2, one stderr line per bad variable, nothing on stdout."""
        proc = run_streamer(["check-config"], JOB_TRENDING_TOPK="0", LOG_LEVEL="loud",
                            JOB_MAX_CONCURRENT="x")
        assert proc.returncode == 2 and proc.stdout == ""
        lines = proc.stderr.splitlines()
        assert [line.split(": ")[2] for line in lines] == [
            "JOB_TRENDING_TOPK", "JOB_MAX_CONCURRENT", "LOG_LEVEL"], lines
        assert all(line.startswith("streamer: invalid configuration: ") for line in lines)


class TestInWords:
    """No raw pydantic message reaches a person."""

    @pytest.mark.parametrize(("name", "value", "rule"), [
        ("STREAMER_WEB_PORT", "65536", "must be a port number in 1..65535"),
        ("RECONCILE_MIN_OVERLAP", "1.5", "must be at most 1"),
        ("RECONCILE_DRIFT_THRESHOLD", "-1", "must be at least 0"),
        ("RECONCILE_DRIFT_THRESHOLD", "lots", "must be a number"),
        ("STREAMER_CLICKHOUSE_SINK", "maybe", "must be true or false"),
    ])
    def test_rule(self, name: str, value: str, rule: str) -> None:
        """The rule is said in words, and the rejected value is echoed."""
        [error] = all_errors({name: value})
        assert error.variable == name
        assert error.rule.startswith(rule) and repr(value) in error.rule, error.rule
        assert "Input should" not in error.rule


class TestFromTheFile:
    """Values from STREAMER_CONFIG_FILE are named by file and line at start, not only on reload."""

    def test_bad_value_names_file_and_line(self, tmp_path: Path) -> None:
        """Two bad values in the file, one in the environment: each located."""
        path = tmp_path / "c.conf"
        path.write_text("# comment\nJOB_TRENDING_TOPK=0\nSTREAMER_WEB_PORT=99999\n")
        errors = all_errors({FILE_VARIABLE: str(path), "LOG_FORMAT": "xml"})
        rules = {e.variable: e.rule for e in errors}
        assert rules["JOB_TRENDING_TOPK"].endswith(f"({path} line 2)")
        assert rules["STREAMER_WEB_PORT"].endswith(f"({path} line 3)")
        assert str(path) not in rules["LOG_FORMAT"]

    def test_unknown_names_get_a_close_match(self, tmp_path: Path) -> None:
        """Every bad line is reported; a typo gets "did you mean", nonsense gets none."""
        path = tmp_path / "c.conf"
        path.write_text("JOB_TRENDING_TOPKK=3\nREDIS_ULR=redis://h:1/0\nFOO=1\nnot a line\n")
        errors = all_errors({FILE_VARIABLE: str(path)})
        assert [e.rule for e in errors] == [
            f"{path} line 1: unknown variable JOB_TRENDING_TOPKK (did you mean JOB_TRENDING_TOPK?)",
            f"{path} line 2: unknown variable REDIS_ULR (did you mean REDIS_URL?)",
            f"{path} line 3: unknown variable FOO",
            f"{path} line 4: expected NAME=VALUE",
        ]
        assert {e.variable for e in errors} == {FILE_VARIABLE}

    def test_bad_lines_and_bad_values_together(self, tmp_path: Path) -> None:
        """A misspelt name does not hide a bad value on another line (or in the environment)."""
        path = tmp_path / "c.conf"
        path.write_text("JOB_TRENDING_TOPKK=3\nJOB_MAX_CONCURRENT=0\n")
        errors = all_errors({FILE_VARIABLE: str(path), "LOG_FORMAT": "xml"})
        assert [e.variable for e in errors] == [FILE_VARIABLE, "JOB_MAX_CONCURRENT", "LOG_FORMAT"]
        assert errors[1].rule.endswith(f"({path} line 2)")


class TestPemFiles:
    """A Kafka TLS file that cannot work is a configuration error (exit 2), never a retry."""

    @pytest.mark.parametrize("name", ["KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"])
    def test_not_pem_is_named_with_its_path(self, pem: dict[str, str], name: str) -> None:
        """Junk in any of the three files: the error names the variable's file and its path."""
        env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": pem["ca"],
               "KAFKA_SSL_CERTFILE": pem["cert"], "KAFKA_SSL_KEYFILE": pem["key"], name: pem["junk"]}
        [error] = all_errors(env)
        wanted = "KAFKA_SSL_CAFILE" if name == "KAFKA_SSL_CAFILE" else "KAFKA_SSL_CERTFILE"
        assert error.variable == wanted and pem["junk"] in error.rule, error

    def test_real_files_pass(self, pem: dict[str, str]) -> None:
        """The real CA, certificate and key load."""
        s = load_settings({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_USERNAME": "u",
                           "KAFKA_SASL_PASSWORD": "p", "KAFKA_SSL_CAFILE": pem["ca"],
                           "KAFKA_SSL_CERTFILE": pem["cert"], "KAFKA_SSL_KEYFILE": pem["key"]})
        assert s.kafka_ssl_cafile == pem["ca"]

    @pytest.mark.parametrize("command", [["check-config"], ["worker"], ["sink"]])
    def test_every_command_exits_2_at_once(self, pem: dict[str, str], command: list[str]) -> None:
        """check-config, worker and sink: exit 2 and one line naming the variable and path."""
        proc = run_streamer(command, KAFKA_SECURITY_PROTOCOL="SSL", KAFKA_SSL_CAFILE=pem["junk"])
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.splitlines()
        assert "KAFKA_SSL_CAFILE" in line and pem["junk"] in line
