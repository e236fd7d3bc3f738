"""Topic administration with aiokafka (create the events and dead-letter topics, count partitions)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.kafka.client import KafkaSecurityError, client_kwargs, preflight
from streamer.ops.logging import error_text
from streamer.settings.model import Settings

log = logging.getLogger("streamer.kafka")
MAX_RETRY_S = 10.0  # the longest pause between two attempts to reach Kafka


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], timeout_s: float = 30.0, *,
    security: Mapping[str, Any] | None = None, replication_factor: int = 1,
) -> None:
    """Create topics (name -> partitions) that do not exist yet.

    `security` is `streamer.kafka.client.client_kwargs(settings)` (TLS / SASL keywords).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **(security or {}))
    await asyncio.wait_for(admin.start(), timeout_s)
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(n, p, replication_factor) for n, p in topics.items() if n not in existing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
    finally:
        await admin.close()


async def ensure_settings_topics(settings: Settings, dlq_partitions: int) -> None:
    """The events and dead-letter topics of `settings`, with its replication factor and security."""
    from streamer.kafka.client import client_kwargs

    await ensure_topics(
        settings.kafka_bootstrap_servers,
        {settings.kafka_events_topic: settings.streamer_topic_partitions,
         settings.kafka_dlq_topic: dlq_partitions},
        security=client_kwargs(settings), replication_factor=settings.kafka_replication_factor)


async def topic_partitions(
    bootstrap: str, topic: str, timeout_s: float = 30.0, *, security: Mapping[str, Any] | None = None
) -> int:
    """Number of partitions of a topic, from Kafka metadata (security: `kafka.client.client_kwargs`)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **(security or {}))
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await asyncio.wait_for(consumer.topics(), timeout_s)
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return len(parts)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


async def prepare_topics(settings: Settings) -> int:
    """One attempt at what every consumer of the events topic needs first: check the connection
    (a refused TLS handshake or login raises KafkaSecurityError), create the topics if missing,
    and return the events topic's partition count."""
    s = settings
    security = client_kwargs(s)
    await preflight(s)
    await ensure_topics(s.kafka_bootstrap_servers, {
        s.kafka_events_topic: s.streamer_topic_partitions, s.kafka_dlq_topic: 1},
        security=security, replication_factor=s.kafka_replication_factor)
    return await topic_partitions(s.kafka_bootstrap_servers, s.kafka_events_topic, security=security)


async def wait_for_topics(
    settings: Settings, stop: asyncio.Event,
    on_error: Callable[[BaseException], None] = lambda exc: None,
    until: str = "until it answers or the process is stopped",
) -> int | None:
    """prepare_topics until Kafka answers (backing off to MAX_RETRY_S); None when stopped first.

    A refused TLS handshake or login (KafkaSecurityError) ends the wait at once: retrying would
    not fix it. `on_error` sees every other failure (e.g. for the start clock's last error).
    One WARNING says what is retried and `until` when; a repeat of the same error is DEBUG."""
    delay_s = 0.5
    last = ""
    while not stop.is_set():
        try:
            return await prepare_topics(settings)
        except KafkaSecurityError:
            raise
        except Exception as exc:
            on_error(exc)
            level = logging.DEBUG if error_text(exc) == last else logging.WARNING
            last = error_text(exc)
            log.log(level, "Kafka at %s not usable yet (%s); retrying "
                    "every <= %.0f s %s", settings.kafka_bootstrap_servers, last, MAX_RETRY_S, until)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay_s)
            delay_s = min(delay_s * 2, MAX_RETRY_S)
    return None
