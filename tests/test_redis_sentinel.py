"""Redis Sentinel (real master + replica + 3 sentinels on loopback): the client follows a
failover, and a worker's publishing resumes on the new master with nothing stale as fresh."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from redis.exceptions import RedisError

from streamer.cache.lock import RedisLock
from streamer.cache.redis_client import make_redis
from streamer.clock import wall_ms
from streamer.core.window import Window
from streamer.demo.services import LocalService
from streamer.settings.model import Settings, load_settings
from tests.redis_ha import SERVICE, SentinelSetup, sentinel_setup
from tests.stream_helpers import Cluster, keyed, oracle, produce, random_events, read_trending, settle_exact
from tests.waiting import await_until

INTERVAL_S = 2


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[SentinelSetup]:
    """A fresh master/replica/3-sentinel set-up per test (a failover changes it for good)."""
    with sentinel_setup(tmp_path / "sentinel") as setup:
        yield setup


@pytest.fixture
async def master_client(sentinels: SentinelSetup) -> AsyncIterator[Redis]:
    """The project's client for the redis+sentinel:// URL."""
    client = make_redis(load_settings({"REDIS_URL": sentinels.url}), socket_timeout_s=1.0)
    yield client
    await client.aclose()


class TestSentinelClient:
    """make_redis() on a redis+sentinel:// URL."""

    async def test_reaches_the_master_and_follows_a_failover(
        self, sentinels: SentinelSetup, master_client: Redis
    ) -> None:
        """Writes go to the master; after SENTINEL FAILOVER they go to the promoted replica."""
        await master_client.set("k", b"1")
        assert sync_redis.Redis(port=sentinels.master.port).get("k") == b"1"
        lock = RedisLock(master_client, "job", 60_000)
        assert await lock.acquire()
        old_port = sentinels.master_port()
        sync_redis.Redis(port=sentinels.sentinels[0].port).execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "FAILOVER", SERVICE)
        await await_until(lambda: sentinels.master_port() != old_port, 30, "a new master",
                          ignoring=(RedisError,))
        assert sentinels.master_port() == sentinels.replica.port
        promoted = sync_redis.Redis(port=sentinels.replica.port)

        async def write_lands_on_new_master() -> bool:
            # Until the old master is demoted, a pooled connection may still write there (and
            # that write is lost at its resync): the client follows once it gets READONLY.
            await master_client.set("k", b"2")
            return bool(promoted.get("k") == b"2")

        await await_until(write_lands_on_new_master, 30, "a write on the new master",
                          ignoring=(RedisError,))


@dataclass
class Observed:
    """What a reader saw of trending while the master failed over."""

    publishes: list[dict[str, Any]] = field(default_factory=list)  # distinct metas, in order
    wrong: list[str] = field(default_factory=list)  # values that did not equal their oracle
    read_errors: int = 0
    went_back: int = 0  # a meta older than the one seen before (an unreplicated write lost)


async def watch(redis: Redis, events: list[dict[str, Any]], stop: asyncio.Event, seen: Observed) -> None:
    """Read value + meta every 50 ms; check every distinct publish against the brute force."""
    last = 0
    while not stop.is_set():
        try:
            posts, meta = await read_trending(redis)
        except Exception:
            seen.read_errors += 1
            posts, meta = None, None
        if posts is not None and meta is not None and meta["generated_at_ms"] != last:
            if meta["generated_at_ms"] < last:
                seen.went_back += 1
            last = meta["generated_at_ms"]
            seen.publishes.append(meta)
            if posts != oracle(events, Window(meta["window_start_ms"], meta["window_end_ms"]), 50):
                seen.wrong.append(f"{meta['mode']} publish at {last}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)


class TestWorkerAcrossFailover:
    """A worker publishing through Sentinel while the master is killed."""

    async def test_publishing_resumes_on_the_new_master(
        self, kafka_service: LocalService, sentinels: SentinelSetup, master_client: Redis,
        settings: Settings, tmp_path: Path,
    ) -> None:
        """kill -9 of the master: publishing resumes on the promoted replica, every value exact.

        Prints the failover gap (s) and the publishes missed."""
        c = Cluster(kafka_service, sentinels.url, tmp_path, prefix="sen",
                    JOB_TRENDING_INTERVAL_SEC=str(INTERVAL_S))
        stop, seen = asyncio.Event(), Observed()
        try:
            w = c.worker("w1")
            w.wait_ready(90)
            events = random_events(3000, 400, wall_ms(), seed=5)
            await produce(c.bootstrap, c.topic, keyed(events))
            got, want, _ = await settle_exact(master_client, events, 4)
            assert got == want and want, w.tail()
            watcher = asyncio.create_task(watch(master_client, events, stop, seen))
            await await_until(lambda: _count(seen, 2), 30, "two publishes watched")
            killed_ms, old_port = wall_ms(), sentinels.master.port
            sentinels.master.kill()
            await await_until(lambda: sentinels.master_port() != old_port, 30,
                              "the sentinels promote the replica", ignoring=(RedisError,))
            await await_until(lambda: _count(seen, 3, after_ms=killed_ms), 60,
                              "three publishes after the kill")
            stop.set()
            await watcher
            assert sentinels.master_port() == sentinels.replica.port
            assert not seen.wrong, seen.wrong
            after = [m for m in seen.publishes if m["generated_at_ms"] > killed_ms]
            assert all(m["mode"] == "stream" and m["complete"] for m in after), after
            stamps = [m["generated_at_ms"] for m in seen.publishes]
            gap_ms = max(b - a for a, b in itertools.pairwise(stamps))
            missed = round(gap_ms / (INTERVAL_S * 1000)) - 1
            print(f"\nfailover gap {gap_ms / 1000:.1f}s, publishes missed {missed}, "
                  f"reads failed {seen.read_errors}, metas going back {seen.went_back}, "
                  f"publishes watched {len(stamps)}")
            assert c.stop_all() == [0]
        finally:
            stop.set()
            c.kill_all()


async def _count(seen: Observed, n: int, after_ms: int = 0) -> bool:
    """At least n distinct publishes generated after `after_ms` were watched."""
    return sum(int(m["generated_at_ms"]) > after_ms for m in seen.publishes) >= n
