"""Redis edge: the client, the one-writer lock, fenced Cluster writes, suggestions' run store.

Modules:
  redis_client    the Redis client of REDIS_URL: one server, a Sentinel's master, or a Cluster.
  lock            one writer at a time: SET NX PX with a token, extended and released by its holder.
  fencing         fenced multi-key writes in a Redis Cluster (keys of different slots).
  suggestions     a suggestions run's Redis side: run lock, shard claims, plans, batch writes.
"""
