"""One writer at a time: SET NX PX with a random token, extended and released only by its holder."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

from redis.asyncio import Redis

from streamer.core.payloads import lock_key

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class RedisLock:
    """A lease on a job name; `token` proves ownership for fenced writes."""

    def __init__(
        self, redis: Redis, job: str, ttl_ms: int, owner: str = "", key: str | None = None
    ) -> None:
        self.redis = redis
        self.key = key or lock_key(job)  # `key`: a lock keyed by the public key it guards
        self.ttl_ms = ttl_ms
        self.token = f"{owner}:{secrets.token_hex(12)}" if owner else secrets.token_hex(16)
        self.held = False

    async def acquire(self) -> bool:
        """Take the lock if free (or renew it if already ours); True when we hold it now."""
        if await self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms):
            self.held = True
            return True
        return await self.extend()  # a re-acquire by the holder must not report "not held"

    async def extend(self) -> bool:
        """Push the expiry out again; False when the lock is no longer ours."""
        ok = await self.redis.eval(_EXTEND, 1, self.key, self.token, self.ttl_ms)
        self.held = bool(ok)
        return self.held

    async def release(self) -> None:
        """Delete the lock if it is still ours."""
        with contextlib.suppress(Exception):
            await self.redis.eval(_RELEASE, 1, self.key, self.token)
        self.held = False

    async def holder(self) -> str | None:
        """Token of the current holder, if any."""
        raw = await self.redis.get(self.key)
        return raw.decode() if isinstance(raw, bytes) else raw

    @contextlib.asynccontextmanager
    async def keep_alive(self) -> AsyncIterator[None]:
        """Extend the lock every ttl/3 while the body runs; stop when the lock is lost."""
        task = asyncio.create_task(self._renew_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _renew_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            try:
                if not await self.extend():
                    return
            except Exception:
                continue

