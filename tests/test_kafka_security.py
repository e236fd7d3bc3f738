"""Kafka over TLS (mutual) end to end, and refused TLS / SASL ending a start with one line.

The broker is tansu behind a TLS terminator (tests/kafka_tls_helpers.py): it only speaks TLS
to clients and requires a client certificate. A successful SASL login cannot be tested here:
tansu's SCRAM users can only be created by an authenticated client, so its memory store
cannot be bootstrapped ("early eof"). The SASL tests check refused logins instead: SCRAM
against an authenticating tansu that has no users, and any SASL against a plain broker.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from redis.asyncio import Redis

from streamer.core.events import Event
from streamer.core.partitioning import partition_for_post, post_key
from streamer.core.sink_rows import SinkRows
from streamer.demo.services import LocalService, tansu_binary
from streamer.kafka.admin import ensure_topics
from streamer.kafka.client import client_kwargs
from streamer.kafka.sink_consumer import ClickHouseSinkConsumer
from streamer.settings.model import load_settings
from tests.kafka_tls_helpers import TlsKafka, start_tls_kafka
from tests.ports import rerun_on_taken_port, start_listening
from tests.stream_helpers import (
    FAST_GROUP_ENV,
    WorkerProcess,
    keyed,
    now_ms,
    produce,
    random_events,
    settle_exact,
    unique,
)

pytestmark = [pytest.mark.timeout(240),
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]
PARTITIONS = 2
FAIL_WITHIN_S = 60


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """A TLS-only broker requiring client certificates, for this module."""
    kafka = start_tls_kafka(tmp_path_factory.mktemp("tls-kafka"))
    yield kafka
    kafka.stop()


async def describe(kafka: TlsKafka, topics: list[str]) -> dict[str, tuple[int, dict[str, str]]]:
    """Per topic: its replication factor and the configs the broker reports, read over TLS."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap,
                                **client_kwargs(load_settings(kafka.env())))
    await admin.start()
    try:
        meta = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics])
    finally:
        await admin.close()
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for topic in meta:
        out[topic["topic"]] = (len(topic["partitions"][0]["replicas"]), {})
    for response in configs:
        for _, _, _, name, entries in response.resources:
            out[name] = (out[name][0], {e[0]: e[1] for e in entries})
    return out


class TestMutualTls:
    """Every client of the project reaches a TLS-only broker with a client certificate."""

    async def test_admin_producer_and_sink_consumer(self, tls_kafka: TlsKafka) -> None:
        """Topics created with the replication factor; the sink reads back exactly what was sent."""
        topic = unique("tls-sink")
        s = load_settings({**tls_kafka.env(), "KAFKA_EVENTS_TOPIC": topic,
                           "KAFKA_REPLICATION_FACTOR": "3",
                           "STREAMER_APP_ID": unique("tls"), **FAST_GROUP_ENV})
        security = client_kwargs(s)
        await ensure_topics(s.kafka_bootstrap_servers, {topic: PARTITIONS}, security=security,
                            replication_factor=s.kafka_replication_factor)
        assert (await describe(tls_kafka, [topic]))[topic][0] == 3
        docs = random_events(300, 25, now_ms(), seed=11)
        await produce(s.kafka_bootstrap_servers, topic, [
            (post_key(d["post_id"]), orjson.dumps(d), partition_for_post(d["post_id"], PARTITIONS))
            for d in docs], security=security)
        written: list[Event] = []
        all_in = asyncio.Event()

        async def insert(rows: SinkRows) -> None:
            written.extend(rows.events())
            if len(written) >= len(docs):
                all_in.set()

        async def positions(offsets: dict[int, int]) -> None:
            return None

        sink = ClickHouseSinkConsumer(s, PARTITIONS, insert, positions)
        stop = asyncio.Event()
        task = asyncio.create_task(sink.run(stop))
        waiter = asyncio.ensure_future(all_in.wait())
        await asyncio.wait([task, waiter], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        stop.set()
        await asyncio.wait_for(task, 30)
        assert sorted(e.event_id for e in written) == sorted(d["event_id"] for d in docs)

    async def test_worker_publishes_exact_trending(
        self, tls_kafka: TlsKafka, redis_url: str, redis_client: Redis, tmp_path: Path
    ) -> None:
        """A worker child over mutual TLS: exact trending; RF and compaction on its topics."""
        topic, app_id = unique("tls-events"), unique("tls-app")
        env = {**os.environ, **FAST_GROUP_ENV, **tls_kafka.env(), "REDIS_URL": redis_url,
               "KAFKA_EVENTS_TOPIC": topic, "KAFKA_DLQ_TOPIC": topic + ".dlq",
               "STREAMER_APP_ID": app_id, "STREAMER_TOPIC_PARTITIONS": str(PARTITIONS),
               "KAFKA_REPLICATION_FACTOR": "2", "CLICKHOUSE_URL": ""}
        worker = WorkerProcess(env, tmp_path / "w").start()
        try:
            await asyncio.to_thread(worker.wait_ready, 120)
            events = random_events(500, 30, now_ms(), seed=5)
            await produce(tls_kafka.bootstrap, topic, keyed(events),
                          security=client_kwargs(load_settings(tls_kafka.env())))
            posts, want, _ = await settle_exact(redis_client, events, PARTITIONS)
            assert want and posts == want
            changelog, leader = f"{app_id}-state-changelog", f"{app_id}-__assignor-__leader"
            topics = await describe(tls_kafka, [topic, topic + ".dlq", changelog, leader])
            assert {t: rf for t, (rf, _) in topics.items()} == {
                topic: 2, topic + ".dlq": 2, changelog: 2, leader: 2}
            assert topics[changelog][1].get("cleanup.policy") == "compact"
        finally:
            code = await asyncio.to_thread(worker.terminate)
        assert code == 0, worker.tail()


def run_failing(command: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `streamer COMMAND`, which must end within the contract's FAIL_WITHIN_S: exit code, stderr."""

    def run(with_port: dict[str, str]) -> tuple[int, str]:
        try:
            proc = subprocess.run([sys.executable, "-m", "streamer", command], env=with_port,
                                  capture_output=True, text=True, timeout=FAIL_WITHIN_S)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"`streamer {command}` still running after {FAIL_WITHIN_S} s") from exc
        return proc.returncode, proc.stderr

    return rerun_on_taken_port(run, env, lambda result: result[1])  # the web port taken: again


def assert_one_line(stderr: str, *needles: str) -> None:
    """Exactly one `streamer:` line, naming what to fix, and no traceback."""
    lines = [line for line in stderr.splitlines() if line.startswith("streamer:")]
    assert len(lines) == 1, stderr
    assert all(n in lines[0] for n in needles), stderr
    assert "Traceback" not in stderr


def base_env(redis_url: str, tmp_path: Path) -> dict[str, str]:
    """A process environment with its own data dir and port."""
    return {**os.environ, **FAST_GROUP_ENV, "REDIS_URL": redis_url, "CLICKHOUSE_URL": "",
            "STREAMER_DATA_DIR": str(tmp_path / uuid.uuid4().hex[:6]),
            "KAFKA_EVENTS_TOPIC": unique("refused")}  # STREAMER_WEB_PORT: run_failing


class TestRefusedTls:
    """A TLS failure ends the start with one line and a non-zero exit, never a retry loop."""

    @pytest.mark.parametrize("command", ["worker", "sink"])
    def test_wrong_ca(self, tls_kafka: TlsKafka, redis_url: str, tmp_path: Path,
                      command: str) -> None:
        """The broker's certificate does not verify against KAFKA_SSL_CAFILE."""
        env = {**base_env(redis_url, tmp_path), **tls_kafka.env(),
               "KAFKA_SSL_CAFILE": str(tls_kafka.pki.other_ca)}
        code, stderr = run_failing(command, env)
        assert code not in (0, 2), stderr
        assert_one_line(stderr, "KAFKA_SSL_CAFILE", "certificate verif")

    def test_missing_client_certificate(self, tls_kafka: TlsKafka, redis_url: str,
                                        tmp_path: Path) -> None:
        """The broker requires a client certificate and none is configured."""
        env = {**base_env(redis_url, tmp_path), **tls_kafka.env(mutual=False)}
        code, stderr = run_failing("worker", env)
        assert code not in (0, 2), stderr
        assert_one_line(stderr, "KAFKA_SSL_CERTFILE", "CERTIFICATE_REQUIRED")


@pytest.fixture(scope="module")
def auth_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A tansu broker with `--authentication` (SCRAM) and no users: every login fails."""
    log_path = tmp_path_factory.mktemp("auth-kafka") / "tansu.log"

    def spawn(port: int) -> subprocess.Popen[bytes]:
        with open(log_path, "wb") as log:
            return subprocess.Popen(
                [tansu_binary(), "broker", "--authentication", "--listener-url",
                 f"tcp://127.0.0.1:{port}", "--advertised-listener-url", f"tcp://127.0.0.1:{port}",
                 "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})

    proc, port = start_listening(spawn, log_path, 20)
    yield port
    proc.kill()
    proc.wait(10)


class TestRefusedSasl:
    """A refused SASL login or handshake: one line, non-zero, in time."""

    @pytest.mark.parametrize(("command", "mechanism"), [
        ("worker", "SCRAM-SHA-512"), ("sink", "SCRAM-SHA-256"),
    ])
    def test_scram_login_rejected(self, auth_kafka: int, redis_url: str, tmp_path: Path,
                                  command: str, mechanism: str) -> None:
        """An authenticating broker that does not know the user ends the start."""
        env = {**base_env(redis_url, tmp_path), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{auth_kafka}",
               "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": mechanism,
               "KAFKA_SASL_USERNAME": "nobody", "KAFKA_SASL_PASSWORD": "pw-never-shown"}
        code, stderr = run_failing(command, env)
        assert code not in (0, 2), stderr
        assert_one_line(stderr, "SASL authentication failed", "rejected the SCRAM login")
        assert "pw-never-shown" not in stderr

    @pytest.mark.parametrize(("command", "mechanism"), [
        ("worker", "PLAIN"), ("sink", "SCRAM-SHA-256"),
    ])
    def test_broker_without_sasl(self, kafka_service: LocalService, redis_url: str,
                                 tmp_path: Path, command: str, mechanism: str) -> None:
        """The plain test broker refuses the SASL handshake (UnsupportedSaslMechanism)."""
        env = {**base_env(redis_url, tmp_path),
               "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_service.port}",
               "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": mechanism,
               "KAFKA_SASL_USERNAME": "svc", "KAFKA_SASL_PASSWORD": "pw-never-shown"}
        code, stderr = run_failing(command, env)
        assert code not in (0, 2), stderr
        assert_one_line(stderr, "SASL authentication failed", "KAFKA_SASL_MECHANISM")
        assert "pw-never-shown" not in stderr
