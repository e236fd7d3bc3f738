"""Children started on a port from free_port(): another process can take it before the child
binds, so each start here is retried on a new port when the child lost it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from streamer.demo.services import START_ATTEMPTS, ServiceError, free_port

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


def listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on TCP port `port` (IPv4 and IPv6), from /proc/net."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in list(rows)[1:]:
                fields = row.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def owns(pid: int, inodes: set[str]) -> bool:
    """Process `pid` holds one of these sockets."""
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


def wait_for_own_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes]) -> None:
    """Until the child itself listens on the port (not whoever took it meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before listening")
        if owns(proc.pid, listening_inodes(port)):
            return
        time.sleep(0.05)
    raise ServiceError(f"the child is not listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


def start_listening(
    spawn: Callable[[int], subprocess.Popen[bytes]], log: Path, timeout_s: float = 60
) -> tuple[subprocess.Popen[bytes], int]:
    """spawn(port) on a free port and wait until it listens there: (child, port); a child that
    lost its port is killed and started again on another (its log at `log` says why)."""
    for attempt in range(START_ATTEMPTS):
        port = free_port()
        proc = spawn(port)
        try:
            wait_for_own_port(port, timeout_s, proc)
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
