"""Real Redis HA set-ups on loopback for tests: a Sentinel-watched master + replica, a 3-master Cluster."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as sync_redis
from redis.exceptions import RedisError

from streamer.demo.services import (
    START_ATTEMPTS,
    LocalService,
    ServiceError,
    free_port,
    redis_server_binary,
    wait_for_port,
)
from tests.waiting import wait_until

SERVICE = "mymaster"


def _server(root: Path, name: str, *args: str, cluster_bus: bool = False) -> LocalService:
    """One redis-server (no persistence) with extra arguments, logging into root/name; with
    cluster_bus, its cluster bus on a free port of its own (picked again on each retry)."""

    def spawn(svc: LocalService) -> list[str]:
        return [redis_server_binary(), "--port", str(svc.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(svc.workdir),
                "--daemonize", "no", *args]

    return _up(root, name, "redis.log", spawn, cluster_bus)


def _up(root: Path, name: str, log_name: str, command: Callable[[LocalService], list[str]],
        cluster_bus: bool = False) -> LocalService:
    """Start the service on a free port (and cluster bus port); one that fails to listen on
    them is killed and retried on other ports (a free port may be taken before the child
    binds it)."""
    for attempt in range(START_ATTEMPTS):
        svc = LocalService(name, free_port(), workdir=root / name)
        svc.workdir.mkdir(parents=True, exist_ok=True)
        bus = free_port() if cluster_bus else None
        cmd = command(svc) + ([] if bus is None else ["--cluster-port", str(bus)])
        log = open(svc.workdir / log_name, "wb")  # noqa: SIM115 - lives as long as the child
        svc.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=svc.workdir,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            for port in (svc.port,) if bus is None else (svc.port, bus):
                wait_for_port(port, 15, svc.proc)
            return svc
        except ServiceError:
            svc.kill()
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _sentinel(root: Path, name: str, master_port: int) -> LocalService:
    """One redis-sentinel watching the master (quorum 2, down after 1 s)."""
    binary = shutil.which("redis-sentinel")
    if binary is None:
        pytest.skip("redis-sentinel not installed (`apt-get install -y redis-sentinel`)")

    def spawn(svc: LocalService) -> list[str]:
        conf = svc.workdir / "sentinel.conf"  # sentinel rewrites its config: a file of its own
        conf.write_text(
            f"port {svc.port}\nbind 127.0.0.1\ndir {svc.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        return [str(binary), str(conf)]

    return _up(root, name, "sentinel.log", spawn)


@dataclass
class SentinelSetup:
    """A master, its replica and three Sentinels."""

    master: LocalService
    replica: LocalService
    sentinels: list[LocalService] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL for the worker."""
        nodes = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def master_port(self) -> int:
        """The port the Sentinels currently name as master."""
        client = sync_redis.Redis(port=self.sentinels[0].port)
        try:
            addr = client.execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
            return int(addr[1])
        finally:
            client.close()

    def stop(self) -> None:
        """Stop every process."""
        for svc in [*self.sentinels, self.replica, self.master]:
            svc.stop()


@contextlib.contextmanager
def sentinel_setup(root: Path) -> Iterator[SentinelSetup]:
    """Master + replica + 3 Sentinels, yielded once the Sentinels agree and the replica is in sync."""
    master = _server(root, "master")
    replica = _server(root, "replica", "--replicaof", "127.0.0.1", str(master.port))
    setup = SentinelSetup(master, replica)
    try:
        setup.sentinels = [_sentinel(root, f"sentinel-{i}", master.port) for i in range(3)]
        repl = sync_redis.Redis(port=replica.port)
        wait_until(lambda: repl.info("replication")["master_link_status"] == "up", 30,
                   "replica in sync", ignoring=(RedisError,))
        repl.close()
        for s in setup.sentinels:
            client = sync_redis.Redis(port=s.port)
            wait_until(lambda c=client: (  # type: ignore[misc]
                c.execute_command("SENTINEL", "CKQUORUM", SERVICE)
                and c.execute_command("SENTINEL", "REPLICAS", SERVICE)), 30,
                "sentinels see each other and the replica", ignoring=(RedisError,))
            client.close()
        yield setup
    finally:
        setup.stop()


@dataclass
class ClusterSetup:
    """Three masters sharing the 16384 slots."""

    nodes: list[LocalService]

    @property
    def url(self) -> str:
        """REDIS_URL for the worker (two startup nodes are enough; all are given)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            node.stop()


@contextlib.contextmanager
def cluster_setup(root: Path) -> Iterator[ClusterSetup]:
    """`redis-server --cluster-enabled yes` x3 + `redis-cli --cluster create`, once every node says ok."""
    nodes = [_server(root, f"node-{i}", "--cluster-enabled", "yes", "--cluster-config-file",
                     f"nodes-{i}.conf", "--cluster-node-timeout", "2000", cluster_bus=True)
             for i in range(3)]
    setup = ClusterSetup(nodes)
    try:
        cli = shutil.which("redis-cli")
        assert cli is not None, "redis-cli not installed"
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in nodes),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       capture_output=True, timeout=60)
        for node in nodes:
            client = sync_redis.Redis(port=node.port)
            wait_until(lambda c=client: c.cluster("info")["cluster_state"] == "ok", 30,  # type: ignore[misc]
                       "cluster state ok", ignoring=(RedisError,))
            client.close()
        yield setup
    finally:
        setup.stop()
