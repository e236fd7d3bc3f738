"""Redis Cluster (3 real masters on loopback): whole keys, fenced writes, merges, a worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from streamer.cache.fencing import slot_of, slot_tag
from streamer.cache.lock import RedisLock
from streamer.cache.redis_client import is_cluster, make_redis
from streamer.cache.suggestions import RunStore
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.events import Event
from streamer.core.payloads import (
    TrendingMeta,
    decode_trending,
    partial_key,
    suggestions_key,
    trending_key,
    trending_lock_key,
    trending_meta_key,
)
from streamer.core.scoring import PostCounts
from streamer.core.suggest import Suggestion
from streamer.core.window import window_at
from streamer.demo.services import LocalService
from streamer.errors import LockLost
from streamer.settings.model import Settings
from streamer.trending.standby import StandbyTrending
from streamer.trending.write import publish_trending
from tests.redis_ha import ClusterSetup, cluster_setup
from tests.stream_helpers import Cluster, keyed, produce, random_events, settle_exact
from tests.test_stream_publisher import answering, global_top, owned_states, publisher


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterSetup]:
    """One 3-master cluster for this module."""
    with cluster_setup(tmp_path_factory.mktemp("cluster")) as setup:
        yield setup


@pytest.fixture
def cluster_settings(settings: Settings, redis_cluster: ClusterSetup) -> Settings:
    """The test settings pointed at the cluster."""
    return settings.model_copy(update={"redis_url": redis_cluster.url})


@pytest.fixture
async def cluster_client(cluster_settings: Settings) -> AsyncIterator[Redis]:
    """The client the project builds for a redis+cluster:// URL, on a flushed cluster."""
    client = make_redis(cluster_settings)
    await client.flushall()  # RedisCluster: on every primary
    yield client
    await client.aclose()


def posts(n: int, seed: int = 0) -> list[PostCounts]:
    """A ranked list."""
    return sorted((PostCounts(i, views=i * 3 + seed) for i in range(n)), key=lambda p: p.key)


def meta_at(now: int, mark: int) -> TrendingMeta:
    """A stream meta that records which write it came from."""
    return TrendingMeta(now, window_at(now, 60), "stream", [0], extra={"mark": mark})


class TestFencedWrites:
    """Value and meta live in different slots: each key whole, every write fenced."""

    async def test_client_is_a_cluster_and_keys_span_slots(self, cluster_client: Redis) -> None:
        """The premise: trending value and meta are in different slots; the lock is in the value's."""
        assert is_cluster(cluster_client)
        assert slot_of(trending_key(1)) != slot_of(trending_meta_key(1))
        assert slot_of(trending_lock_key(1, "merge")) == slot_of(trending_key(1))
        assert all(slot_of(f"{{{slot_tag(s)}}}") == s for s in (0, 1, 8000, 16383))

    async def test_publish_under_lock_writes_value_and_meta(self, cluster_client: Redis) -> None:
        """A holder's publish lands whole: value, meta, TTL on both."""
        lock = RedisLock(cluster_client, "m", 60_000, key=trending_lock_key(1, "merge"))
        assert await lock.acquire()
        now = wall_ms()
        await publish_trending(cluster_client, 1, posts(5), meta_at(now, 1), 90_000, lock)
        raw = await cluster_client.get(trending_key(1))
        meta = await cluster_client.get(trending_meta_key(1))
        assert raw is not None and decode_trending(raw) == posts(5)
        assert meta is not None and orjson.loads(meta)["mark"] == 1
        assert 0 < await cluster_client.pttl(trending_meta_key(1)) <= 90_000

    async def test_unlocked_write_spans_slots(self, cluster_client: Redis) -> None:
        """Without a lock (no fencing asked for), each slot's keys are still written whole."""
        now = wall_ms()
        await publish_trending(cluster_client, 1, posts(7), meta_at(now, 6), 90_000)
        batch = {u: [Suggestion(u + 2, 0.5, 1)] for u in range(40)}
        await RunStore(cluster_client, "cluster-app").write(batch, 600_000)
        raw, meta = await cluster_client.get(trending_key(1)), await cluster_client.get(trending_meta_key(1))
        assert raw is not None and decode_trending(raw) == posts(7)
        assert meta is not None and orjson.loads(meta)["mark"] == 6
        raw = await cluster_client.get(suggestions_key(39))
        assert raw is not None and orjson.loads(raw)[0]["user_id"] == 41

    async def test_ex_holder_writes_nothing(self, cluster_client: Redis) -> None:
        """A holder paused past its lease: its publish raises LockLost and changes no key."""
        old = RedisLock(cluster_client, "m", 100, key=trending_lock_key(1, "merge"))
        assert await old.acquire()
        await asyncio.sleep(0.3)
        new = RedisLock(cluster_client, "m", 60_000, key=trending_lock_key(1, "merge"))
        assert await new.acquire()
        now = wall_ms()
        await publish_trending(cluster_client, 1, posts(3), meta_at(now, 2), 90_000, new)
        with pytest.raises(LockLost):
            await publish_trending(cluster_client, 1, posts(9), meta_at(now, 3), 90_000, old)
        raw, meta = await cluster_client.get(trending_key(1)), await cluster_client.get(trending_meta_key(1))
        assert raw is not None and decode_trending(raw) == posts(3)
        assert meta is not None and orjson.loads(meta)["mark"] == 2

    async def test_older_fencing_number_cannot_overwrite_meta(self, cluster_client: Redis) -> None:
        """Two holders of sibling locks (merger, standby): the meta never goes back to the older one."""
        merge = RedisLock(cluster_client, "m", 60_000, key=trending_lock_key(1, "merge"))
        standby = RedisLock(cluster_client, "s", 60_000, key=trending_lock_key(1, "standby"))
        assert await merge.acquire() and await standby.acquire()
        now = wall_ms()
        await publish_trending(cluster_client, 1, posts(2), meta_at(now, 4), 90_000, merge)
        await publish_trending(cluster_client, 1, posts(4), meta_at(now, 5), 90_000, standby)
        meta = await cluster_client.get(trending_meta_key(1))
        assert meta is not None and orjson.loads(meta)["mark"] == 5
        raw = await cluster_client.get(trending_key(1))
        assert raw is not None and decode_trending(raw) == posts(4)

    async def test_suggestion_batch_across_slots(self, cluster_client: Redis) -> None:
        """The suggestions job's pipeline over users spread on every master: each key written."""
        batch = {u: [Suggestion(u + 1, 1.5, 2)] for u in range(200)}
        assert len({slot_of(suggestions_key(u)) for u in batch}) > 100
        await RunStore(cluster_client, "cluster-app").write(batch, 600_000)
        for u in (0, 77, 199):
            raw = await cluster_client.get(suggestions_key(u))
            assert raw is not None and orjson.loads(raw)[0]["user_id"] == u + 1
            assert 0 < await cluster_client.pttl(suggestions_key(u)) <= 600_000


class TestMergeInCluster:
    """Partials share the app id's slot: the merger's MGET works, the merge is exact."""

    async def test_two_workers_merge_exactly(
        self, cluster_settings: Settings, cluster_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """2+2 partitions answered by two publishers; the cluster holds the exact global top-K."""
        now = wall_ms()
        a = publisher(cluster_settings, cluster_client, owned_states([0, 1], 4, now), clickhouse)
        b = publisher(cluster_settings, cluster_client, owned_states([2, 3], 4, now), clickhouse)
        assert len({slot_of(partial_key(cluster_settings.streamer_app_id, 1, p)) for p in range(4)}) == 1
        assert await a._hold_lock() and not await b._hold_lock()
        async with answering(b):
            await a.merge(now)
        raw, meta = await cluster_client.get(trending_key(1)), await cluster_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None
        assert decode_trending(raw) == global_top(owned_states([0, 1, 2, 3], 4, now), window_at(now, 60))
        assert orjson.loads(meta)["partitions"] == [0, 1, 2, 3]


class TestWorkerOnCluster:
    """A real worker process publishing to the cluster."""

    async def test_worker_publishes_exact_trending_and_meta(
        self, kafka_service: LocalService, redis_cluster: ClusterSetup, cluster_client: Redis,
        tmp_path: Path,
    ) -> None:
        """Events in, exact complete trending and its meta out, through a redis+cluster:// URL."""
        c = Cluster(kafka_service, redis_cluster.url, tmp_path, prefix="cl")
        try:
            w = c.worker("w1")
            w.wait_ready(90)
            events = random_events(2000, 300, wall_ms(), seed=11)
            await produce(c.bootstrap, c.topic, keyed(events))
            got, want, meta = await settle_exact(cluster_client, events, 4)
            assert got == want and want, w.tail()
            assert meta["mode"] == "stream" and meta["complete"] is True
            assert c.stop_all() == [0]
        finally:
            c.kill_all()


class TestStandbyOnCluster:
    """The standby's fenced write path (no WATCH across value and meta in a Cluster)."""

    async def test_standby_publishes_then_hands_back(
        self, cluster_settings: Settings, cluster_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """Meta missing: the standby publishes ClickHouse's exact list; a fresh stream publish
        afterwards makes it hand back, and its next check writes nothing."""
        now = wall_ms()
        await queries.insert_events(clickhouse, [Event(f"s{i}", i % 4, 1, "view", now - 5_000)
                                                 for i in range(20)])
        sb = StandbyTrending(cluster_settings, clickhouse, cluster_client)
        assert (await sb.tick()).publish
        raw, meta = await cluster_client.get(trending_key(1)), await cluster_client.get(trending_meta_key(1))
        assert raw is not None and meta is not None and orjson.loads(meta)["mode"] == "clickhouse"
        assert decode_trending(raw) == await queries.trending(clickhouse, window_at(now, 60), 50)
        merge = RedisLock(cluster_client, "m", 60_000, key=trending_lock_key(1, "merge"))
        assert await merge.acquire()
        await publish_trending(cluster_client, 1, posts(3), meta_at(wall_ms(), 9), 90_000, merge)
        assert not (await sb.tick()).publish and sb.state == "idle"
        raw = await cluster_client.get(trending_key(1))
        assert raw is not None and decode_trending(raw) == posts(3)
