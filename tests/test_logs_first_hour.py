"""Logs that do not cry wolf: one WARNING per retried condition, the real error once, times in
ISO-8601 UTC, the version first; short commands end with one line."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from streamer import __version__
from streamer.demo.services import free_port
from streamer.ops.logging import error_text, iso_ms, setup_logging, window_text
from tests.ports import rerun_on_taken_port
from tests.test_config import run_streamer


def test_error_text_names_the_type_once() -> None:
    """aiokafka's errors already start with their type; others get it added."""
    assert error_text(KafkaConnectionError("Unable to bootstrap")) == (
        "KafkaConnectionError: Unable to bootstrap")
    assert error_text(ValueError("bad")) == "ValueError: bad"


def test_times_are_iso_utc() -> None:
    """Epoch ms as ISO-8601 UTC; a window as a half-open interval."""
    assert iso_ms(0) == "1970-01-01T00:00:00Z"
    assert iso_ms(1_500) == "1970-01-01T00:00:01.500Z"
    assert window_text(0, 3_600_000) == "[1970-01-01T00:00:00Z, 1970-01-01T01:00:00Z)"


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Leave the root logger as the test found it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


@pytest.mark.parametrize(("level", "shown"), [("INFO", False), ("DEBUG", True)])
@pytest.mark.usefixtures("restore_logging")
def test_library_retry_records_only_at_debug(
    capsys: pytest.CaptureFixture[str], level: str, shown: bool
) -> None:
    """aiokafka's per-retry ERROR and urllib3's retry WARNING show only with LOG_LEVEL=DEBUG."""
    setup_logging(level)
    logging.getLogger("aiokafka").error('Unable connect to "h:1": refused')
    logging.getLogger("urllib3.connectionpool").warning("Retrying (Retry(total=0)) after ...")
    logging.getLogger("aiokafka").error("Heartbeat failed: something else")
    text = capsys.readouterr().err
    assert ("Unable connect" in text) is shown and ("Retrying" in text) is shown
    assert "Heartbeat failed" in text  # everything else stays
    assert text.split(" ", 1)[0].endswith("Z")  # ISO-8601 UTC stamp


def test_kafka_down_is_one_warning_and_one_final_line(tmp_path: Path) -> None:
    """Kafka unreachable for a whole start: the version first, one WARNING naming the address
    and the deadline, no aiokafka ERROR, no doubled error type, one final line, exit 1."""
    kafka = f"127.0.0.1:{free_port()}"
    proc = rerun_on_taken_port(  # its web port taken meanwhile: again on another
        lambda env: run_streamer(["worker"], **env),
        {"KAFKA_BOOTSTRAP_SERVERS": kafka, "STREAMER_START_TIMEOUT_SEC": "6",
         "STREAMER_DATA_DIR": str(tmp_path)}, lambda done: done.stderr)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"streamer {__version__} worker" in lines[0]
    warnings = [line for line in lines if " WARNING " in line]
    assert len(warnings) == 1, lines
    assert f"Kafka at {kafka} not usable yet" in warnings[0]
    assert "STREAMER_START_TIMEOUT_SEC=6" in warnings[0]
    assert not [line for line in lines if " ERROR " in line and "aiokafka" in line], lines
    assert "KafkaConnectionError: KafkaConnectionError" not in proc.stderr
    assert lines[-1].startswith("streamer: start did not finish within 6 s")


def test_top_with_redis_down_is_exactly_one_line() -> None:
    """No stop-sequence message, one line naming Redis, exit 1."""
    proc = run_streamer(["top"], REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("streamer: Redis redis://127.0.0.1:")


def test_jobs_once_prints_a_summary(tmp_path: Path) -> None:
    """`jobs --once` with Redis down: each job's outcome and the exit code on stdout."""
    proc = run_streamer(["jobs", "--once"], REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                        STREAMER_DATA_DIR=str(tmp_path))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[-1] == "jobs --once: trending failed, suggestions failed; exit 1"
    assert proc.stderr.splitlines()[0].endswith(
        f"streamer {__version__} jobs, Python {sys.version.split()[0]}")


def test_short_commands_keep_stderr_for_their_result(tmp_path: Path) -> None:
    """`schema` logs no version line (its stderr is for a failure's one line)."""
    proc = subprocess.run([sys.executable, "-m", "streamer", "schema"], capture_output=True,
                          text=True, timeout=120, env={"STREAMER_DATA_DIR": str(tmp_path),
                                                       "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_clickhouse_down_leaks_no_client_library_warnings(subprocess_env: dict[str, str]) -> None:
    """`jobs --once` against a closed ClickHouse port: our ERROR per job and the summary only,
    no urllib3 retry or clickhouse_connect driver warnings."""
    env = {**subprocess_env, "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
           "JOB_CH_TIMEOUT_MS": "2000"}
    proc = subprocess.run([sys.executable, "-m", "streamer", "jobs", "--once"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "urllib3" not in proc.stderr and "clickhouse_connect" not in proc.stderr, proc.stderr
    assert [line.split(" ", 2)[1] for line in proc.stderr.splitlines()] == ["INFO", "ERROR", "ERROR"]
    assert proc.stdout.splitlines()[-1] == "jobs --once: trending failed, suggestions failed; exit 1"
