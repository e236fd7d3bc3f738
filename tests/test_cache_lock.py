"""RedisLock on a real redis-server: exclusive, extended and released only by its holder."""

from __future__ import annotations

from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from tests.waiting import await_until, value_when


async def test_only_one_holder(redis_client: Redis) -> None:
    """SET NX: the second replica does not get the lock and sees the holder's token."""
    a = RedisLock(redis_client, "job", 60_000, owner="a")
    b = RedisLock(redis_client, "job", 60_000, owner="b")
    assert a.token != b.token and a.token.startswith("a:")
    assert await a.acquire()
    assert not await b.acquire()
    assert not b.held
    assert await b.holder() == a.token
    ttl = await redis_client.pttl(a.key)
    assert 0 < ttl <= 60_000


async def test_extend_and_release_only_by_the_holder(redis_client: Redis) -> None:
    """A non-holder can neither extend nor delete the lock; the holder can."""
    a = RedisLock(redis_client, "job", 60_000)
    b = RedisLock(redis_client, "job", 60_000)
    assert await a.acquire()
    await redis_client.pexpire(a.key, 5_000)
    assert not await b.extend()
    assert await redis_client.pttl(a.key) <= 5_000
    await b.release()
    assert await a.holder() == a.token
    assert await a.extend()
    assert await redis_client.pttl(a.key) > 5_000
    await a.release()
    assert await a.holder() is None
    assert not a.held
    assert await b.acquire()


async def test_expired_lock_taken_over(redis_client: Redis) -> None:
    """After expiry another replica takes over; the old holder can no longer touch it."""
    a = RedisLock(redis_client, "job", 100)
    b = RedisLock(redis_client, "job", 60_000)
    assert await a.acquire()
    await value_when(lambda: redis_client.exists(a.key), lambda n: n == 0, 10, "a's lease to expire")
    assert await b.acquire()
    assert not await a.extend()
    assert not a.held  # the old holder knows it lost the lock
    await a.release()
    assert await b.holder() == b.token
    assert b.held


async def test_keep_alive_renews_while_running(redis_client: Redis) -> None:
    """A lease outlives its TTL while keep_alive runs: renewed (seen as its PTTL going back up)
    more often than the TTL could cover alone. A 3 s lease: a stalled event loop under load
    delays a renewal, it does not lose the lease."""
    a = RedisLock(redis_client, "job", 3000)
    b = RedisLock(redis_client, "job", 3000)
    assert await a.acquire()
    renewals = 0
    last = await redis_client.pttl(a.key)

    async def renewed() -> bool:
        nonlocal renewals, last
        ttl = await redis_client.pttl(a.key)
        assert ttl > 0, "the lease expired while kept alive"
        renewals += ttl > last + 100
        last = ttl
        return renewals >= 4  # four renewals at ttl/3: longer than one TTL

    async with a.keep_alive():
        await await_until(renewed, 60, "four renewals of the lease", 0.05)
        assert not await b.acquire()
        assert a.held
    await a.release()
    assert await b.acquire()


async def test_keep_alive_notices_a_lost_lock(redis_client: Redis) -> None:
    """When someone else holds the key, the renew loop marks the lock as not held."""
    a = RedisLock(redis_client, "job", 300)
    assert await a.acquire()
    async with a.keep_alive():
        await redis_client.set(a.key, "someone-else", px=60_000)
        await await_until(lambda: not a.held, 10, "the renew loop to notice", 0.05)
    assert await a.holder() == "someone-else"


async def test_reacquire_by_the_holder_keeps_it(redis_client: Redis) -> None:
    """Acquiring a lock we already hold renews it instead of reporting it lost."""
    a = RedisLock(redis_client, "job", 60_000)
    assert await a.acquire()
    await redis_client.pexpire(a.key, 5_000)
    assert await a.acquire()
    assert a.held
    assert await redis_client.pttl(a.key) > 5_000
    assert not await RedisLock(redis_client, "job", 60_000).acquire()
