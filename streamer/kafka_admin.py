"""Topic administration with aiokafka (create the events and dead-letter topics)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


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
