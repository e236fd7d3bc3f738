"""Redis connection pool built from settings."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from streamer.config import Settings


def make_redis(settings: Settings, socket_timeout_s: float = 5.0) -> Redis:
    """An asyncio Redis client with a pool of JOB_REDIS_POOL_SIZE connections."""
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.job_redis_pool_size,
        socket_timeout=socket_timeout_s,
        socket_connect_timeout=socket_timeout_s,
        timeout=socket_timeout_s,
    )
    return Redis(connection_pool=pool)
