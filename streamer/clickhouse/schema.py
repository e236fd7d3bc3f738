"""Idempotent DDL for the tables of the contract, and the migration of older follows tables."""

from __future__ import annotations

import secrets

from streamer.clickhouse.client import ClickHouse

EVENTS_RETENTION_DAYS = 30
# Follows and blocks: one row per state change, appended by producers. The version orders the
# rows of a pair as the contract does (greatest created_at; on a tie deleted = 1 wins), so a
# merge keeps the current state; queries read it with argMax and never depend on merges.
_VERSION = "version UInt64 MATERIALIZED toUInt64(toUnixTimestamp64Milli(created_at)) * 2 + deleted"


def _edge_table(database: str, table: str, a: str, b: str) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {database}.{table} (
            {a} UInt64,
            {b} UInt64,
            created_at DateTime64(3, 'UTC'),
            deleted UInt8 DEFAULT 0,
            {_VERSION}
        ) ENGINE = ReplacingMergeTree(version)
        ORDER BY ({a}, {b})"""


def ddl(database: str) -> list[str]:
    """The statements `streamer schema` runs, in order (after migrate_follows)."""
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
        _edge_table(database, "follows", "follower_id", "followee_id"),
        _edge_table(database, "blocks", "blocker_id", "blocked_id"),
    ]


def migration(database: str, suffix: str) -> list[str]:
    """Move a follows table of the first schema (no `deleted`, replacing without a version, which
    could keep an older row of a pair) into the current one; the old rows stay in follows_v1.
    The copy has its own name: of two processes migrating at once, the second's rename fails
    (follows_v1 exists) and a restart finds the table migrated."""
    copy = f"follows_migrating_{suffix}"
    return [
        _edge_table(database, copy, "follower_id", "followee_id"),
        f"INSERT INTO {database}.{copy} (follower_id, followee_id, created_at) "
        f"SELECT follower_id, followee_id, created_at FROM {database}.follows",
        f"RENAME TABLE {database}.follows TO {database}.follows_v1, "
        f"{database}.{copy} TO {database}.follows",
    ]


async def _needs_migration(ch: ClickHouse) -> bool:
    """A follows table without the `deleted` column is of the first schema."""
    rows = await ch.rows(
        "SELECT countIf(name = 'deleted'), count() FROM system.columns "
        "WHERE database = {db:String} AND table = 'follows'",
        {"db": ch.database},
    )
    has_deleted, columns = int(rows[0][0]), int(rows[0][1])
    return columns > 0 and has_deleted == 0


async def create_schema(ch: ClickHouse) -> list[str]:
    """Create the database and tables if missing, migrating an old follows table; what it did."""
    done: list[str] = []
    await ch.command(f"CREATE DATABASE IF NOT EXISTS {ch.database}")
    if await _needs_migration(ch):
        suffix = secrets.token_hex(4)
        try:
            for statement in migration(ch.database, suffix):
                await ch.command(statement)
        except BaseException:
            await ch.command(f"DROP TABLE IF EXISTS {ch.database}.follows_migrating_{suffix}")
            raise
        done.append(f"follows migrated (old rows kept in {ch.database}.follows_v1)")
    for statement in ddl(ch.database):
        await ch.command(statement)
    return done
