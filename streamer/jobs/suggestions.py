"""Suggested users for every active user, batch by batch, one Redis pipeline per batch."""

from __future__ import annotations

from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.cache.publish import publish_suggestions
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import Clock, wall_ms
from streamer.config import Settings
from streamer.jobs.base import Job
from streamer.ops.reload import LiveSettings, live_of


class SuggestionsJob(Job):
    """Adamic-Adar suggestions from ClickHouse's follow graph into Redis."""

    name = "suggestions"
    exclusive = True

    def __init__(
        self, settings: Settings | LiveSettings, ch: ClickHouse, redis: Redis,
        clock: Clock = wall_ms,
    ) -> None:
        self.live = live_of(settings)
        self.ch = ch
        self.redis = redis
        self.clock = clock
        self.refresh()

    def refresh(self) -> None:
        """Settings of the next run (the runner calls this between runs)."""
        self.settings = self.live.current
        self.interval_s = self.settings.job_suggestion_interval_sec

    async def run(self, lock: RedisLock | None) -> str:
        """Refresh every active user's key; stop at the first failed batch."""
        s = self.settings
        users = await queries.active_users(self.ch, self.clock(), s.job_suggestion_active_days)
        size = s.job_suggestion_batch_size
        for start in range(0, len(users), size):
            batch = users[start : start + size]
            ranked = await queries.suggestions(self.ch, batch, s.job_suggestions_per_user)
            await publish_suggestions(self.redis, ranked, s.suggestions_ttl_s, lock)
        batches = (len(users) + size - 1) // size
        return f"refreshed {len(users)} active users in {batches} batches"
