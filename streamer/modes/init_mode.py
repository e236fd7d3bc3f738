"""`streamer init`: the one-shot set-up of a deployment (ClickHouse schema, then the topics)."""

from __future__ import annotations

import logging

from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.kafka.admin import ensure_settings_topics
from streamer.settings.model import Settings

log = logging.getLogger("streamer.init")


async def run_init(settings: Settings) -> int:
    """Create what is missing and leave what exists alone, so every release can re-run it."""
    ch = ClickHouse.from_settings(settings)
    try:
        await create_schema(ch)
    finally:
        ch.close()
    log.info("schema ready in database %s", settings.clickhouse_database)
    partitions = settings.streamer_topic_partitions
    await ensure_settings_topics(settings, partitions)
    print(f"streamer init: schema ready in {settings.clickhouse_database}; topics "
          f"{settings.kafka_events_topic} and {settings.kafka_dlq_topic} ready "
          f"({partitions} partitions when created)", flush=True)
    return 0
