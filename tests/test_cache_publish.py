"""Atomic, fenced cache writes on a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import redis as sync_redis
from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.cache.suggestions import RunStore
from streamer.core.payloads import TrendingMeta, suggestions_key, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.core.suggest import Suggestion
from streamer.core.window import window_at
from streamer.demo.services import LocalService
from streamer.errors import LockLost
from streamer.settings.model import Settings
from streamer.trending import write as publish
from streamer.trending.write import publish_trending, write_atomically
from tests.waiting import value_when

NOW = 1_795_913_777_000


def js(raw: bytes | str | None) -> Any:
    """Parse a JSON value that must exist."""
    assert raw is not None
    return orjson.loads(raw)


def meta(generated: int = NOW) -> TrendingMeta:
    """ClickHouse-mode meta for a publish at `generated`."""
    return TrendingMeta(generated, window_at(generated, 60), "clickhouse", [])


async def test_trending_value_and_meta_with_ttl(redis_client: Redis) -> None:
    """Both keys written with the same TTL; value is the array, meta has the window."""
    posts = [PostCounts(5, 10, 1), PostCounts(2, 3)]
    await publish_trending(redis_client, 1, posts, meta(), 90_000)
    raw, meta_raw = await redis_client.mget(trending_key(1), trending_meta_key(1))
    assert js(raw) == [p.to_payload() for p in posts]
    m = js(meta_raw)
    w = window_at(NOW, 60)
    assert (m["generated_at_ms"], m["window_start_ms"], m["window_end_ms"]) == (NOW, w.start_ms, w.end_ms)
    assert m["mode"] == "clickhouse" and m["partitions"] == []
    for key in (trending_key(1), trending_meta_key(1)):
        assert 85_000 < await redis_client.pttl(key) <= 90_000


async def test_empty_trending_is_written_as_empty_array(redis_client: Redis) -> None:
    """No posts: `[]` is written (not skipped), replacing an older value."""
    await publish_trending(redis_client, 1, [PostCounts(1, 1)], meta(), 90_000)
    await publish_trending(redis_client, 1, [], meta(NOW + 60_000), 90_000)
    assert await redis_client.get(trending_key(1)) == b"[]"
    assert js(await redis_client.get(trending_meta_key(1)))["generated_at_ms"] == NOW + 60_000


async def test_readers_never_see_value_and_meta_from_different_publishes(
    redis_client: Redis, redis_url: str
) -> None:
    """A reader polling MGET during 150 publishes always sees a matching pair."""
    reader = Redis.from_url(redis_url)
    done = asyncio.Event()
    mismatches: list[tuple[Any, Any]] = []

    async def read() -> int:
        seen = 0
        while not done.is_set():
            raw, meta_raw = await reader.mget(trending_key(1), trending_meta_key(1))
            if raw is not None:
                seen += 1
                gen = js(meta_raw)["generated_at_ms"]
                if js(raw)[0]["post_id"] != gen:
                    mismatches.append((raw, meta_raw))
        return seen

    task = asyncio.create_task(read())
    for gen in range(1, 151):
        await publish_trending(redis_client, 1, [PostCounts(gen, gen)], meta(gen), 90_000)
        await asyncio.sleep(0)
    done.set()
    assert await task > 0
    await reader.aclose()
    assert mismatches == []


async def test_write_with_held_lock(redis_client: Redis) -> None:
    """The holder's fenced write goes through."""
    lock = RedisLock(redis_client, "trending", 60_000)
    assert await lock.acquire()
    await write_atomically(redis_client, {"k1": b"a", "k2": b"b"}, 10_000, lock)
    assert await redis_client.mget("k1", "k2") == [b"a", b"b"]


async def test_write_with_taken_over_lock_raises_and_keeps_old_values(redis_client: Redis) -> None:
    """A lock that expired and was taken over: LockLost, nothing overwritten."""
    old = RedisLock(redis_client, "trending", 100)
    assert await old.acquire()
    await publish_trending(redis_client, 1, [PostCounts(1, 1)], meta(), 90_000)
    before = await redis_client.mget(trending_key(1), trending_meta_key(1))
    await value_when(lambda: redis_client.exists(old.key), lambda n: n == 0, 10, "the old lease to expire")
    new = RedisLock(redis_client, "trending", 60_000)
    assert await new.acquire()
    with pytest.raises(LockLost):
        await publish_trending(redis_client, 1, [PostCounts(9, 9)], meta(NOW + 1), 90_000, old)
    assert not old.held
    assert await redis_client.mget(trending_key(1), trending_meta_key(1)) == before


async def test_write_with_expired_lock_raises(redis_client: Redis) -> None:
    """A lock that simply expired (nobody else holds it) also fences the write."""
    lock = RedisLock(redis_client, "trending", 100)
    assert await lock.acquire()
    await value_when(lambda: redis_client.exists(lock.key), lambda n: n == 0, 10, "the lease to expire")
    with pytest.raises(LockLost):
        await write_atomically(redis_client, {"k": b"v"}, 10_000, lock)
    assert await redis_client.exists("k") == 0


Interleave = Callable[[Callable[[sync_redis.Redis], object]], None]


@pytest.fixture
def between_check_and_exec(
    redis_service: LocalService, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Interleave]:
    """Run `action(other client)` on every write attempt after WATCH and the holder GET, before
    EXEC: the moment another client (or our own keep-alive) touches the lock key."""
    other = sync_redis.Redis(port=redis_service.port)

    def install(action: Callable[[sync_redis.Redis], object]) -> None:
        real_text = publish._text

        def text_then_act(raw: bytes | str) -> str:
            out = real_text(raw)
            action(other)
            return out

        monkeypatch.setattr(publish, "_text", text_then_act)

    yield install
    other.close()


async def test_lock_taken_between_check_and_exec_aborts_the_write(
    redis_client: Redis, between_check_and_exec: Interleave
) -> None:
    """WATCH: if the lock changes after the holder check, EXEC fails and nothing is written."""
    lock = RedisLock(redis_client, "trending", 60_000)
    assert await lock.acquire()
    between_check_and_exec(lambda other: other.set(lock.key, "thief", px=60_000))
    with pytest.raises(LockLost):
        await write_atomically(redis_client, {"k": b"v"}, 10_000, lock)
    assert await redis_client.exists("k") == 0
    assert not lock.held


async def test_own_keep_alive_between_check_and_exec_does_not_lose_the_write(
    redis_client: Redis, between_check_and_exec: Interleave
) -> None:
    """Our own renewal (PEXPIRE on the lock key) aborts EXEC once; the write is retried."""
    lock = RedisLock(redis_client, "trending", 60_000)
    assert await lock.acquire()
    renewals: list[object] = []

    def renew_once(other: sync_redis.Redis) -> None:
        if not renewals:
            renewals.append(other.pexpire(lock.key, 60_000))  # what keep_alive does

    between_check_and_exec(renew_once)
    await write_atomically(redis_client, {"k": b"v"}, 10_000, lock)
    assert renewals == [True]
    assert await redis_client.get("k") == b"v"
    assert lock.held


async def test_lock_key_touched_on_every_attempt_gives_up(
    redis_client: Redis, between_check_and_exec: Interleave
) -> None:
    """If every attempt is aborted, the write raises LockLost instead of looping forever."""
    lock = RedisLock(redis_client, "trending", 60_000)
    assert await lock.acquire()
    between_check_and_exec(lambda other: other.pexpire(lock.key, 60_000))
    with pytest.raises(LockLost):
        await write_atomically(redis_client, {"k": b"v"}, 10_000, lock)
    assert await redis_client.exists("k") == 0


async def test_suggestions_batch_with_ttl_and_empty_lists(redis_client: Redis, settings: Settings) -> None:
    """The suggestions job's write: each user's array (or `[]`) with the TTL, one pipeline."""
    await redis_client.config_resetstat()
    batch = {1: [Suggestion(7, 1.5, 2), Suggestion(8, 0.5, 1)], 2: []}
    await RunStore(redis_client, settings.streamer_app_id).write(batch, settings.suggestions_ttl_s * 1000)
    assert js(await redis_client.get(suggestions_key(1))) == [
        {"user_id": 7, "score": 1.5, "mutual_count": 2},
        {"user_id": 8, "score": 0.5, "mutual_count": 1},
    ]
    assert await redis_client.get(suggestions_key(2)) == b"[]"
    for user in batch:
        assert 1_190_000 < await redis_client.pttl(suggestions_key(user)) <= 1_200_000
    stats = await redis_client.info("commandstats")
    assert stats["cmdstat_set"]["calls"] == 2 and "cmdstat_exec" not in stats  # no MULTI/EXEC
