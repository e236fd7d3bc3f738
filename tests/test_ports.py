"""The test helpers that start children on free ports and reap them (tests/ports.py, reaping.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.demo.services import ServiceError
from tests.ports import rerun_on_taken_port, start_listening, wait_for_own_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
LISTEN = ("import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); "
          "s.listen(); time.sleep(600)")
SLEEP = [sys.executable, "-c", "import time; time.sleep(600)"]


def listener(port: int, log: Path) -> subprocess.Popen[bytes]:
    """A child that listens on `port` (a traceback naming the taken address if it cannot)."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", LISTEN, str(port)], stdout=out,
                                stderr=subprocess.STDOUT)


def test_a_child_that_lost_its_port_starts_again_on_another(tmp_path: Path) -> None:
    """The first start binds a port someone holds (the race): killed, started on a new one."""
    log = tmp_path / "child.log"
    with socket.create_server(("127.0.0.1", 0)) as held:
        taken = int(held.getsockname()[1])
        given: list[int] = []

        def spawn(port: int) -> subprocess.Popen[bytes]:
            given.append(port)
            return listener(taken if len(given) == 1 else port, log)

        proc, port = start_listening(spawn, log, 30)
        try:
            assert len(given) == 2 and port == given[1] and port != taken
            assert proc.poll() is None
        finally:
            proc.kill()
            proc.wait(10)


def test_another_process_on_the_port_is_not_the_child_listening() -> None:
    """Someone else answering on the child's port does not count as the child being up."""
    with socket.create_server(("127.0.0.1", 0)) as held:
        proc = subprocess.Popen(SLEEP)
        try:
            with pytest.raises(ServiceError, match="not listening"):
                wait_for_own_port(int(held.getsockname()[1]), 1, proc)
        finally:
            proc.kill()
            proc.wait(10)


def test_a_run_is_repeated_only_while_its_port_was_taken() -> None:
    """Taken: again on another port; then a failure for another reason is returned as it is."""
    runs: list[dict[str, str]] = []

    def run(env: dict[str, str]) -> str:
        runs.append(env)
        return "address already in use" if len(runs) == 1 else "bad config"

    assert rerun_on_taken_port(run, {}, lambda out: out) == "bad config"
    assert len(runs) == 2 and runs[0]["STREAMER_WEB_PORT"] != runs[1]["STREAMER_WEB_PORT"]


def test_a_child_in_our_group_dies_with_its_parent() -> None:
    """PR_SET_PDEATHSIG: kill -9 of the process that started it ends the child too."""
    code = ("import subprocess, sys, time; from tests.reaping import die_with_parent; "
            f"p = subprocess.Popen({SLEEP!r}, preexec_fn=die_with_parent(None)); "
            "print(p.pid, flush=True); time.sleep(600)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, cwd=ROOT)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert os.getpgid(child) == os.getpgid(parent.pid)  # not its own group: no watchdog
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: not alive(child), 30, "the child to die with its parent")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
