"""Idempotent DDL for the tables of the contract."""

from __future__ import annotations

from streamer.clickhouse.client import ClickHouse

EVENTS_RETENTION_DAYS = 30


def ddl(database: str) -> list[str]:
    """The statements `streamer schema` runs, in order."""
    return [
        f"CREATE DATABASE IF NOT EXISTS {database}",
        # Ordered by time for window scans. Plain MergeTree on purpose: queries count each
        # event_id once, and a replacing engine could keep a later copy (higher Kafka offset)
        # of a repeated event and drop the copy the stream counted, which breaks reconcile.
        f"""CREATE TABLE IF NOT EXISTS {database}.post_events (
            event_id String,
            post_id UInt64,
            user_id UInt64,
            event_type LowCardinality(String),
            event_time DateTime64(3, 'UTC'),
            kafka_partition Int32 DEFAULT -1,
            kafka_offset Int64 DEFAULT -1
        ) ENGINE = MergeTree
        PARTITION BY toYYYYMMDD(event_time)
        ORDER BY (event_time, event_id)
        TTL toDateTime(event_time) + INTERVAL {EVENTS_RETENTION_DAYS} DAY""",
        # Tables made by an earlier version gain the source position columns (reconcile cut-off).
        f"ALTER TABLE {database}.post_events ADD COLUMN IF NOT EXISTS kafka_partition Int32 DEFAULT -1",
        f"ALTER TABLE {database}.post_events ADD COLUMN IF NOT EXISTS kafka_offset Int64 DEFAULT -1",
        # Keyed by follower so F(u) and F(f) are primary-key lookups.
        f"""CREATE TABLE IF NOT EXISTS {database}.follows (
            follower_id UInt64,
            followee_id UInt64,
            created_at DateTime64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree
        ORDER BY (follower_id, followee_id)""",
    ]


async def create_schema(ch: ClickHouse) -> None:
    """Create the database and tables if missing."""
    for statement in ddl(ch.database):
        await ch.command(statement)
