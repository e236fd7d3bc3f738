"""Trending: every writer of the trending key and their one write path.

Modules:
  merger          the stream's publish loop: workers answer merge requests, one merger publishes.
  job             ClickHouse-mode trending: the batch query, published atomically.
  standby         the standby beside stream workers: ClickHouse only while the stream is stale.
  write           the one WATCH/MULTI write of trending + meta, fenced by a lock or lease.
"""
