"""Redis client built from REDIS_URL: one server, the master a Sentinel names, or a Cluster."""

from __future__ import annotations

from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from streamer.settings.model import Settings
from streamer.settings.redis_url import RedisTarget, parse_redis_url


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's master-tracking pool that waits for a free connection instead of failing,
    like the single-server pool (`master_for(connection_pool_class=...)` is the extension point)."""


def is_cluster(redis: object) -> bool:
    """True for a Redis Cluster client: value and meta then live in different slots."""
    return isinstance(redis, RedisCluster)


def make_redis(settings: Settings, socket_timeout_s: float = 5.0) -> Redis:
    """An asyncio client with JOB_REDIS_POOL_SIZE connections (per node in a Cluster).

    A Cluster client is returned typed as `Redis`: it offers the same commands, and the code
    that must differ (multi-key writes) asks `is_cluster()`."""
    target = parse_redis_url(settings.redis_url)
    timeouts: dict[str, Any] = {"socket_timeout": socket_timeout_s,
                                "socket_connect_timeout": socket_timeout_s}
    if target.kind == "sentinel":
        return _sentinel_master(target, settings.job_redis_pool_size, socket_timeout_s, timeouts)
    if target.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in target.hosts]
        cluster = RedisCluster(startup_nodes=nodes, username=target.username,
                               password=target.password, ssl=target.tls,
                               max_connections=settings.job_redis_pool_size, **timeouts)
        return cast(Redis, cluster)
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.job_redis_pool_size,
        timeout=socket_timeout_s, **timeouts,
    )
    return Redis(connection_pool=pool)


def _sentinel_master(
    target: RedisTarget, pool_size: int, wait_s: float, timeouts: dict[str, Any]
) -> Redis:
    """The current master of the service; redis-py follows a failover on the next command."""
    sentinel_kwargs: dict[str, Any] = {**timeouts, "ssl": target.tls}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    sentinel = Sentinel(
        list(target.hosts), sentinel_kwargs=sentinel_kwargs, **timeouts)
    master = sentinel.master_for(
        target.service_name, redis_class=Redis, connection_pool_class=BlockingSentinelPool,
        db=target.db, username=target.username, password=target.password, ssl=target.tls,
        max_connections=pool_size, timeout=wait_s, **timeouts,
    )
    return cast(Redis, master)
