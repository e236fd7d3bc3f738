"""ClickHouse edge: client (HTTP server or embedded chDB), schema, batch queries.

Modules:
  client          one async facade over clickhouse-connect, the same on chDB and HTTP servers.
  schema          idempotent DDL for the contract's tables.
  queries         batch queries of ClickHouse mode and reconciliation; each event_id counts once.
"""
