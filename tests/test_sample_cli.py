"""`streamer sample` never doubles data and never writes into a server it was not told to."""

from __future__ import annotations

from pathlib import Path

from streamer.demo.services import free_port
from tests.test_config import run_streamer

SIZES = ["--events", "300", "--posts", "20", "--users", "40", "--avg-follows", "3"]


def test_rerun_is_refused_and_replace_empties_first(tmp_path: Path) -> None:
    """Load; a rerun exits 2 naming the rows and --replace, changing nothing; --replace reloads."""
    first = run_streamer(["sample", *SIZES], STREAMER_DATA_DIR=str(tmp_path))
    assert first.returncode == 0, first.stderr
    assert "300 events" in first.stdout
    again = run_streamer(["sample", *SIZES], STREAMER_DATA_DIR=str(tmp_path))
    assert again.returncode == 2
    [line] = again.stderr.splitlines()
    assert "post_events holds 300 rows" in line and "--replace" in line
    replaced = run_streamer(["sample", *SIZES, "--replace"], STREAMER_DATA_DIR=str(tmp_path))
    assert replaced.returncode == 0, replaced.stderr
    # 300, not 600: the refused rerun added nothing
    assert "post_events holds 300 rows" in replaced.stdout and "replaced" in replaced.stdout


def test_a_server_needs_allow_server(tmp_path: Path) -> None:
    """An http(s) CLICKHOUSE_URL without --allow-server: exit 2, one line, password masked."""
    url = f"http://default:pw123@127.0.0.1:{free_port()}"
    proc = run_streamer(["sample", *SIZES], STREAMER_DATA_DIR=str(tmp_path), CLICKHOUSE_URL=url)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert "--allow-server" in line and "CLICKHOUSE_URL" in line and "pw123" not in line
    told = run_streamer(["sample", *SIZES, "--allow-server"], STREAMER_DATA_DIR=str(tmp_path),
                        CLICKHOUSE_URL=url, JOB_CH_TIMEOUT_MS="2000")
    assert told.returncode == 1 and "--allow-server" not in told.stderr  # it tried the server
