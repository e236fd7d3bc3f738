"""The one trending write path: trending + meta together, fenced by the publisher's lock or
lease, for every writer (stream merger, ClickHouse job, standby). Suggestions are written by
`cache.suggestions.RunStore`, one pipeline per batch.

Single server and Sentinel: one MULTI/EXEC under WATCH (`write_if`). Cluster: per slot, fenced."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import WatchError

from streamer.cache.fencing import write_fenced
from streamer.cache.lock import RedisLock
from streamer.cache.redis_client import is_cluster
from streamer.core.payloads import (
    TrendingMeta,
    encode_meta,
    encode_trending,
    trending_key,
    trending_meta_key,
)
from streamer.core.scoring import PostCounts
from streamer.errors import LockLost


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


# A WATCH abort is retried this often: the lock key also changes when our own keep-alive
# extends it (PEXPIRE), which is no reason to give up the write.
_WATCH_ATTEMPTS = 3


async def write_atomically(
    redis: Redis, values: Mapping[str, bytes], ttl_ms: int, lock: RedisLock | None = None
) -> None:
    """SET every key with PX ttl in one MULTI/EXEC; with a lock, only while we hold it.

    In a Redis Cluster, keys of different slots cannot share a transaction: each slot is
    written whole and fenced instead (streamer/cache/fencing.py)."""
    if is_cluster(redis):
        await write_fenced(redis, values, ttl_ms, lock)
        return
    for _ in range(_WATCH_ATTEMPTS):
        if await _try_write(redis, values, ttl_ms, lock):
            return
    if lock is not None:
        lock.held = False
    raise LockLost(f"lock {lock.key if lock else ''} kept changing during the write")


async def _try_write(
    redis: Redis, values: Mapping[str, bytes], ttl_ms: int, lock: RedisLock | None
) -> bool:
    """One fenced MULTI/EXEC; False when the watched lock key changed before EXEC."""

    async def holds(pipe: Pipeline) -> bool:
        if lock is not None:
            holder = await pipe.get(lock.key)
            if holder is None or _text(holder) != lock.token:
                lock.held = False
                raise LockLost(f"lock {lock.key} lost before write; not overwriting")
        return True

    # A WatchError is a takeover or our own renewal: the next attempt re-checks the holder.
    return await write_if(redis, values, ttl_ms, lock.key if lock else None, holds)


async def write_if(
    redis: Redis, values: Mapping[str, bytes], ttl_ms: int, watch_key: str | None,
    check: Callable[[Pipeline], Awaitable[bool]],
) -> bool:
    """SET every key with PX ttl in one MULTI/EXEC under WATCH of `watch_key`, if `check` (run
    on the watching pipeline) still passes; False when it fails or the watched key changed."""
    async with redis.pipeline(transaction=True) as pipe:
        if watch_key is not None:
            await pipe.watch(watch_key)
        if not await check(pipe):
            return False
        pipe.multi()  # type: ignore[no-untyped-call]
        for key, value in values.items():
            pipe.set(key, value, px=ttl_ms)
        try:
            await pipe.execute()
        except WatchError:
            return False
    return True


async def publish_trending(
    redis: Redis,
    window_hours: int,
    posts: Sequence[PostCounts],
    meta: TrendingMeta,
    ttl_ms: int,
    lock: RedisLock | None = None,
) -> None:
    """Write the trending array and its meta together (`[]` when empty); the meta says its TTL,
    so a reader measures the age of any writer's publish (the interval is reloadable)."""
    values = {
        trending_key(window_hours): encode_trending(posts),
        trending_meta_key(window_hours): encode_meta(replace(meta, ttl_ms=ttl_ms)),
    }
    await write_atomically(redis, values, ttl_ms, lock)


async def read_together(redis: Redis, keys: Sequence[str]) -> list[bytes | str | None]:
    """The keys' values as one snapshot (MGET); in a Cluster, one GET per key, in order."""
    if is_cluster(redis):
        return [await redis.get(key) for key in keys]
    return list(await redis.mget(list(keys)))
