"""The shared fixtures start real services."""

from __future__ import annotations

from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse


async def test_redis_fixture_answers_ping(redis_client: Redis) -> None:
    """The private redis-server answers."""
    assert await redis_client.ping()


async def test_clickhouse_fixture_has_tables(clickhouse: ClickHouse) -> None:
    """The schema exists in the embedded engine."""
    rows = await clickhouse.rows("SHOW TABLES FROM nova")
    assert {r[0] for r in rows} >= {"post_events", "follows"}
