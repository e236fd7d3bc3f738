"""Periodic jobs: interface, runner, suggestions, reconcile (no stream or trending imports).

Modules:
  base            the job interface: compute a value, write it with a TTL, on an interval.
  runner          runs jobs on their intervals: concurrency, Redis lock, metrics, clean stop.
  suggestions     suggested users for every active user: planned runs in shards shared by replicas.
  reconcile       the stream's snapshot against ClickHouse over the same window; drift policy.
"""
