"""Topic administration with aiokafka (create the events and dead-letter topics)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streamer.config import Settings


async def ensure_topics(
    bootstrap: str, topics: dict[str, int], timeout_s: float = 30.0, *,
    security: Mapping[str, Any] | None = None, replication_factor: int = 1,
) -> None:
    """Create topics (name -> partitions) that do not exist yet.

    `security` is `streamer.kafka_client.client_kwargs(settings)` (TLS / SASL keywords).
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
    from streamer.kafka_client import client_kwargs

    await ensure_topics(
        settings.kafka_bootstrap_servers,
        {settings.kafka_events_topic: settings.streamer_topic_partitions,
         settings.kafka_dlq_topic: dlq_partitions},
        security=client_kwargs(settings), replication_factor=settings.kafka_replication_factor)
