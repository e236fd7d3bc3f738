"""Deployment of the standalone sink and the Kafka settings in docker-compose.yml and k8s/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from streamer.settings.model import load_settings
from tests.test_deploy_compose import command_of, env_of
from tests.test_deploy_k8s import container, find, pod_spec, settings_env

ROOT = Path(__file__).resolve().parent.parent


def compose_services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml."""
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert isinstance(services, dict)
    return services


class TestCompose:
    """One broker: replication factor 1; the sink is its own service, workers' sinks off."""

    def test_sink_service(self) -> None:
        """`streamer sink` with the shared environment, a health check and the 60 s grace."""
        sink = compose_services()["sink"]
        assert command_of(sink) == ["streamer", "sink"]
        assert sink["stop_grace_period"] == "60s"
        assert "/healthz" in " ".join(sink["healthcheck"]["test"])
        assert {"init", "kafka", "clickhouse", "redis"} <= set(sink["depends_on"])
        assert not load_settings(env_of(sink)).clickhouse_embedded

    def test_workers_leave_the_sink_to_it(self) -> None:
        """Workers run without their built-in sink; the rest of their settings are shared."""
        services = compose_services()
        for name in ("worker-1", "worker-2"):
            env = env_of(services[name])
            assert load_settings(env).streamer_clickhouse_sink is False, name
            assert env["KAFKA_BOOTSTRAP_SERVERS"] == env_of(services["sink"])["KAFKA_BOOTSTRAP_SERVERS"]

    def test_replication_factor_fits_the_single_broker(self) -> None:
        """The stack runs one broker, so every topic gets one replica."""
        services = compose_services()
        assert load_settings(env_of(services["sink"])).kafka_replication_factor == 1
        brokers = [s for s in services.values() if str(s.get("image", "")).startswith("apache/kafka")]
        assert len(brokers) == 1


class TestKubernetes:
    """The sink Deployment; replication factor 3 for a production cluster."""

    def test_sink_deployment(self) -> None:
        """`streamer sink` with probes on the web port and the contract's grace period."""
        sink = find("Deployment", "streamer-sink")
        c = container(sink)
        assert c["command"] == ["streamer", "sink"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod_spec(sink)["terminationGracePeriodSeconds"] == 60

    def test_configmap_kafka_settings(self) -> None:
        """RF 3 (three or more brokers), workers' built-in sink off beside the Deployment."""
        settings = load_settings(settings_env())
        assert settings.kafka_replication_factor == 3
        assert settings.streamer_clickhouse_sink is False
        assert settings.kafka_security_protocol == "PLAINTEXT"  # secured examples are comments
