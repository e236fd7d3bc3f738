"""`streamer sink`: only the ClickHouse sink consumer group, for deployments with a ClickHouse server.

It joins the same consumer group as the sink inside workers (`{STREAMER_APP_ID}-clickhouse-sink`),
so in-worker sinks and standalone sinks share the partitions and never both write one
partition's events; run workers with `STREAMER_CLICKHOUSE_SINK=false` beside it so the rows
keep flowing while every worker is down. Exactly the worker's sink: at-least-once into
`post_events`, offsets committed after ClickHouse took the rows, positions mirrored to Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis

from streamer.cache.redis_client import make_redis
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.core.payloads import sink_positions_key
from streamer.core.sink_rows import SinkRows
from streamer.kafka.admin import wait_for_topics
from streamer.kafka.sink_consumer import ClickHouseSinkConsumer, sink_group
from streamer.ops.http import start_http
from streamer.ops.metrics import serve_as
from streamer.settings.model import Settings

log = logging.getLogger("streamer.sink")


class SinkProcess:
    """The sink consumer plus what it writes to; `ready` once the last write went through."""

    def __init__(self, settings: Settings, partitions: int, ch: ClickHouse, redis: Redis) -> None:
        self.ch = ch
        self.redis = redis
        self.app_id = settings.streamer_app_id
        self.last_write_ok = True
        self.consumer = ClickHouseSinkConsumer(settings, partitions, self.insert,
                                               self.publish_positions)

    async def insert(self, rows: SinkRows) -> None:
        """Write one batch into post_events; remembers whether it went through (readiness)."""
        try:
            await queries.insert_rows(self.ch, rows)
        except Exception:
            self.last_write_ok = False
            raise
        self.last_write_ok = True

    async def publish_positions(self, offsets: dict[int, int]) -> None:
        """Mirror committed positions to Redis, where reconciliation waits for them."""
        if offsets:
            await self.redis.hset(sink_positions_key(self.app_id),
                                  mapping={str(p): o for p, o in offsets.items()})

    async def readiness(self) -> tuple[bool, str]:
        """Ready while the consumer runs and ClickHouse took the last batch."""
        if not self.last_write_ok:
            return False, "the last ClickHouse insert failed (retrying)"
        assigned = sorted(tp.partition for tp in self.consumer.consumer.assignment())
        return True, f"sink consuming partitions {assigned}"


async def not_ready() -> tuple[bool, str]:
    """Readiness before the sink exists."""
    return False, "connecting to Kafka and ClickHouse"


async def run_sink(settings: Settings, stop: asyncio.Event) -> int:
    """Entry point of `streamer sink`: consume until stop, then exit 0."""
    state: dict[str, SinkProcess] = {}

    async def readiness() -> tuple[bool, str]:
        sink = state.get("sink")
        return await (sink.readiness() if sink is not None else not_ready())

    serve_as("sink")
    http = await start_http(settings.streamer_web_port, readiness)
    ch: ClickHouse | None = None
    redis: Redis | None = None
    try:
        partitions = await wait_for_topics(settings, stop)
        if partitions is None:
            return 0
        ch = ClickHouse.from_settings(settings)
        try:
            await create_schema(ch)
        except Exception as exc:  # the inserts retry with back-off until ClickHouse is back
            log.warning("ClickHouse schema check failed (the sink retries): %s", exc)
        redis = make_redis(settings)
        sink = state["sink"] = SinkProcess(settings, partitions, ch, redis)
        log.info("sink running: topic %s, %d partitions, group %s", settings.kafka_events_topic,
                 partitions, sink_group(settings))
        await sink.consumer.run(stop)
        return 0
    finally:
        if redis is not None:
            with contextlib.suppress(Exception):
                await redis.aclose()
        if ch is not None:
            ch.close()
        await http.cleanup()
