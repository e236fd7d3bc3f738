"""Children started on a port from free_port(): another process can take it before the child
binds, so each start here is retried on a new port when the child lost it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamer.demo.services import START_ATTEMPTS, ServiceError, free_port, wait_for_port

R = TypeVar("R")


def port_was_taken(output: str) -> bool:
    """The child's output says its port was bound by someone else meanwhile."""
    return "address already in use" in output.lower()


def tail(path: Path, lines: int = 40) -> str:
    """The end of a log file (empty when there is none yet)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_listening(
    spawn: Callable[[int], subprocess.Popen[bytes]], log: Path, timeout_s: float = 60
) -> tuple[subprocess.Popen[bytes], int]:
    """spawn(port) on a free port and wait until it listens there: (child, port); a child that
    lost its port is killed and started again on another (its log at `log` says why)."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        proc = spawn(port)
        try:
            wait_for_port(port, timeout_s, proc)
            return proc, port
        except ServiceError as exc:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if attempt == START_ATTEMPTS - 1 or not port_was_taken(tail(log)):
                raise AssertionError(f"{exc}\n{tail(log)}") from exc
    raise AssertionError("unreachable")


def rerun_on_taken_port(
    run: Callable[[dict[str, str]], R], env: dict[str, str], output: Callable[[R], str],
    variable: str = "STREAMER_WEB_PORT",
) -> R:
    """run(env) with `variable` on a free port; again on another port while the run's output
    says the port was taken (a run meant to fail must fail for its own reason)."""
    for attempt in range(START_ATTEMPTS):
        result = run({**env, variable: str(free_port())})
        if attempt == START_ATTEMPTS - 1 or not port_was_taken(output(result)):
            return result
    raise AssertionError("unreachable")
