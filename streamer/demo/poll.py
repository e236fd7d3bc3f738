"""What the demo reads, the way a real consumer would: the trending value and its meta from
Redis, the worker's counters from its Prometheus /metrics endpoint."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from streamer.core.payloads import decode_trending, reconcile_key, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.trending.write import read_together


@dataclass
class Metrics:
    """One scrape of the worker's /metrics: totals per sample name and per label set."""

    samples: dict[str, float] = field(default_factory=dict)
    labeled: dict[str, dict[tuple[tuple[str, str], ...], float]] = field(default_factory=dict)

    def total(self, name: str) -> float:
        """Sum of a sample over all its labels (0 when absent)."""
        return self.samples.get(name, 0.0)

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """A sample's values keyed by one label."""
        out: dict[str, float] = {}
        for labels, value in self.labeled.get(name, {}).items():
            key = dict(labels).get(label, "")
            out[key] = out.get(key, 0.0) + value
        return out

    def present(self, name: str) -> bool:
        """True when the worker exports this sample."""
        return name in self.samples


def parse_metrics(text: str) -> Metrics:
    """Prometheus text exposition -> Metrics (`_created` timestamps skipped)."""
    out = Metrics()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith("_created"):
                continue
            out.samples[s.name] = out.samples.get(s.name, 0.0) + float(s.value)
            out.labeled.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = float(s.value)
    return out


@dataclass
class Snapshot:
    """What Redis and the worker said at one moment."""

    at_s: float
    trending: list[PostCounts] | None = None
    trending_raw: bytes | None = None
    meta: dict[str, Any] | None = None
    reconcile: dict[str, Any] | None = None
    metrics: Metrics | None = None


class Poller:
    """Reads the published caches from Redis and the worker's counters from /metrics."""

    def __init__(self, redis: Redis, metrics_url: str, window_hours: int) -> None:
        self.redis = redis
        self.metrics_url = metrics_url
        self.hours = window_hours
        self._http: aiohttp.ClientSession | None = None

    async def snapshot(self) -> Snapshot:
        """One consistent-enough read of everything the view shows."""
        snap = Snapshot(time.monotonic())
        keys = (trending_key(self.hours), trending_meta_key(self.hours), reconcile_key(self.hours))
        raw, meta, rec = await read_together(self.redis, keys)
        if raw is not None:
            snap.trending_raw = raw if isinstance(raw, bytes) else str(raw).encode()
            snap.trending = decode_trending(snap.trending_raw)
        snap.meta = orjson.loads(meta) if meta else None
        snap.reconcile = orjson.loads(rec) if rec else None
        snap.metrics = await self.scrape()
        return snap

    async def scrape(self) -> Metrics | None:
        """The worker's metrics, or None while it does not answer."""
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2))
        try:
            async with self._http.get(self.metrics_url) as resp:
                return parse_metrics(await resp.text()) if resp.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._http is not None:
            await self._http.close()

