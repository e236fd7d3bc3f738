"""Two deployments (two STREAMER_APP_IDs) on one Redis: each merges only its own partials, and
the public trending key always holds one deployment's exact result (real Redis)."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.payloads import decode_trending, partial_key, trending_key
from streamer.core.scoring import PostCounts
from streamer.core.window import window_at
from streamer.settings.model import Settings
from streamer.trending.merger import Publisher
from tests.test_stream_publisher import answering, global_top, owned_states, publisher


def deployment(settings: Settings, redis: Redis, ch: ClickHouse, app_id: str, seed: int, now: int
               ) -> tuple[list[Publisher], list[PostCounts]]:
    """Two workers (2+2 partitions) of one app id; and its exact global top-K."""
    s = settings.model_copy(update={"streamer_app_id": app_id})
    workers = [publisher(s, redis, owned_states(parts, 4, now, seed), ch) for parts in ([0, 1], [2, 3])]
    exact = global_top(owned_states([0, 1, 2, 3], 4, now, seed), window_at(now, 60))
    return workers, exact


async def merged(redis: Redis, merger: Publisher, others: list[Publisher], now: int) -> list[PostCounts]:
    """The public trending value after `merger` merged while `others` answered."""
    async with answering(*others):
        await merger.merge(now)
    raw = await redis.get(trending_key(1))
    assert raw is not None
    return decode_trending(raw)


class TestTwoAppIds:
    """Blue and green share a Redis."""

    async def test_each_merges_only_its_own_partials(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """Blue publishes blue's exact result while green answers too; then green takes over."""
        now = wall_ms()
        blue, blue_exact = deployment(settings, redis_client, clickhouse, "blue", 1, now)
        green, green_exact = deployment(settings, redis_client, clickhouse, "green", 4, now)
        assert blue_exact != green_exact
        assert await blue[0]._hold_lock()
        assert not await green[0]._hold_lock()  # the lock is keyed by the public key
        assert await merged(redis_client, blue[0], [blue[1], *green], now) == blue_exact
        await blue[0].lock.release()
        assert await green[0]._hold_lock()
        assert await merged(redis_client, green[0], [green[1], *blue], now) == green_exact
        both = [partial_key(app, 1, 0) for app in ("blue", "green")]
        assert await redis_client.exists(*both) == 2  # both answered, each under its own app id

    async def test_racing_mergers_leave_one_exact_result(
        self, settings: Settings, redis_client: Redis, clickhouse: ClickHouse
    ) -> None:
        """Both mergers try every round at once: the key holds blue's or green's exact result."""
        now = wall_ms()
        blue, blue_exact = deployment(settings, redis_client, clickhouse, "blue", 2, now)
        green, green_exact = deployment(settings, redis_client, clickhouse, "green", 3, now)
        async with answering(*blue, *green):
            for _ in range(6):
                await asyncio.gather(*(self._try_merge(p, now) for p in (blue[0], green[0])))
                raw = await redis_client.get(trending_key(1))
                assert raw is not None
                value = decode_trending(raw)
                assert value in (blue_exact, green_exact)
                for p in (blue[0], green[0]):
                    await p.lock.release()

    @staticmethod
    async def _try_merge(pub: Publisher, now: int) -> None:
        if await pub._hold_lock():
            await pub.merge(now)
