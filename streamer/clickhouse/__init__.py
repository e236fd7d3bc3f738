"""ClickHouse edge: client (HTTP server or embedded chDB), schema, batch queries, event sink."""
