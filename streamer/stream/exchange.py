"""Requests and partition answers over Redis between workers: one exchange, two uses.

One request key and one answer key per partition, JSON values that expire, posts as compact
rows (`encode_posts`): `Exchange` is that Redis side, written once. Two exchanges use it:

- Merges (`MergeExchange`). Workers' clocks may differ: the merger writes a request naming the
  window of its own clock (`window_at(now)`) under a fresh id; every worker polls the request
  key and answers, per owned partition, with that partition's exact top-K over *that* window
  (a worker behind the merger first advances its states to the merger's time; one ahead still
  holds the older minutes as retained minutes). The merger accepts only answers to its current
  request id, so nothing from an older request or another deployment is merged.
- Reconciliation (`ReconcileRequests`). Every JOB_RECONCILE_INTERVAL_SEC the merger writes a
  request naming a complete-minute window (`core.window.complete_window_at`). Each worker
  answers, at its next tick, with each owned partition's top-(2K) and event total over that
  window. Once every partition has answered, the merger hands their union, one
  `core.reconcile.StreamSnapshot`, to the reconciler (`jobs.reconcile`; jobs never import the
  stream).

All keys carry STREAMER_APP_ID and share its hash tag, so the MGET of the answers works in a
Redis Cluster too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from streamer.core.partition_state import PartitionState
from streamer.core.payloads import (
    complete_snapshot_key,
    merge_request_key,
    partial_key,
    reconcile_request_key,
)
from streamer.core.reconcile import ReconcileReport, StreamSnapshot
from streamer.core.scoring import PostCounts, merge_partials
from streamer.core.window import Window, complete_window_at, window_at
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.stream.reconcile")
Doc = dict[str, Any]


def encode_posts(posts: Sequence[PostCounts]) -> list[list[int]]:
    """Compact rows [post_id, views, likes, comments, shares]: the one row codec of answers."""
    return [[p.post_id, p.views, p.likes, p.comments, p.shares] for p in posts]


def decode_posts(rows: Sequence[Sequence[int]]) -> list[PostCounts]:
    """Inverse of encode_posts."""
    return [PostCounts(*(int(x) for x in row)) for row in rows]


def window_of(doc: Doc) -> Window:
    """The window a request names."""
    return Window(int(doc["window_start_ms"]), int(doc["window_end_ms"]))


class Exchange:
    """One request key and one answer key per partition, JSON values that expire."""

    def __init__(self, redis: Redis, request_key: str, answer_key: Callable[[int], str]) -> None:
        self.redis = redis
        self.request_key = request_key
        self.answer_key = answer_key

    async def post(self, doc: Doc, ttl_ms: int) -> None:
        """Open a request (replacing any open one)."""
        await self.redis.set(self.request_key, orjson.dumps(doc), px=ttl_ms)

    async def open_request(self) -> Doc | None:
        """The open request, if any."""
        raw = await self.redis.get(self.request_key)
        return orjson.loads(raw) if raw else None

    async def withdraw(self) -> None:
        """Close the open request."""
        await self.redis.delete(self.request_key)

    async def write_answers(self, docs: Mapping[int, Doc], ttl_ms: int) -> None:
        """Each partition's answer, in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition, doc in docs.items():
                pipe.set(self.answer_key(partition), orjson.dumps(doc), px=ttl_ms)
            await pipe.execute()

    async def read_answers(self, partitions: int) -> list[Doc | None]:
        """The answers of partitions 0..partitions-1 (None where there is none)."""
        keys = [self.answer_key(p) for p in range(partitions)]
        return [orjson.loads(raw) if raw else None for raw in await self.redis.mget(keys)]


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """One merge: its id, the window it merges and the merger's clock when it asked."""

    request_id: str
    window: Window
    now_ms: int
    k: int  # entries every answer carries: the merger's JOB_TRENDING_TOPK decides (reloads)

    def to_doc(self) -> Doc:
        """The request key's value."""
        return {"id": self.request_id, "window_start_ms": self.window.start_ms,
                "window_end_ms": self.window.end_ms, "now_ms": self.now_ms, "k": self.k}

    @classmethod
    def from_doc(cls, doc: Doc) -> MergeRequest:
        """Parse the request key's value."""
        return cls(str(doc["id"]), window_of(doc), int(doc["now_ms"]), int(doc["k"]))


@dataclass(frozen=True, slots=True)
class Answers:
    """What the merger found for one request."""

    partials: list[list[PostCounts]]
    present: list[int]
    missing: list[int]


class MergeExchange(Exchange):
    """Both sides of the merge exchange of one deployment."""

    def __init__(self, redis: Redis, settings: Settings | LiveSettings, owner: str) -> None:
        self.live = live_of(settings)
        settings = self.live.current
        self.app_id = settings.streamer_app_id  # app id, window and its length: restart-only
        self.hours = settings.job_trending_window_hours
        self.window_minutes = settings.window_minutes
        self.owner = owner
        super().__init__(redis, merge_request_key(self.app_id, self.hours),
                         lambda partition: partial_key(self.app_id, self.hours, partition))
        self.answered: tuple[str, set[int]] = ("", set())  # request id -> partitions answered

    @property
    def ttl_ms(self) -> int:
        """Requests and answers live as long as the trending key (reloadable interval)."""
        return int(self.live.current.trending_ttl_ms)

    async def request(self, now_ms: int, k: int) -> MergeRequest:
        """Merger: name the window of `now_ms` and the depth `k` under a fresh id."""
        req = MergeRequest(f"{now_ms}-{secrets.token_hex(4)}",
                           window_at(now_ms, self.window_minutes), now_ms, k)
        await self.post(req.to_doc(), self.ttl_ms)
        return req

    async def current(self) -> MergeRequest | None:
        """Worker: the open request, if any."""
        doc = await self.open_request()
        return MergeRequest.from_doc(doc) if doc else None

    async def answer(self, req: MergeRequest, states: Mapping[int, PartitionState],
                     current: Window | None = None) -> list[int]:
        """Write the partial of every owned partition not yet answered; partitions that cannot
        compute the window (a clock beyond the retained minutes) stay unanswered.

        `current`: the window the states stand at; when it is the requested one, the
        incremental top-K index answers (`top`), otherwise a scan (`complete_partial`)."""
        if self.answered[0] != req.request_id:
            self.answered = (req.request_id, set())
        done = self.answered[1]
        todo = [(p, s) for p, s in states.items() if p not in done and s.can_compute(req.window)]
        if not todo:
            return []
        docs = {}
        for partition, state in todo:
            top = (state.top(req.k) if req.window == current
                   else state.complete_partial(req.window, req.k).posts)
            docs[partition] = {"request": req.request_id, "partition": partition,
                               "window_start_ms": req.window.start_ms,
                               "window_end_ms": req.window.end_ms,
                               "owner": self.owner, "top": encode_posts(top)}
        await self.write_answers(docs, self.ttl_ms)
        done.update(docs)
        return list(docs)

    def has_answered(self, request_id: str, partitions: Iterable[int]) -> bool:
        """Whether this worker already answered `request_id` for every one of `partitions`."""
        return self.answered[0] == request_id and not set(partitions) - self.answered[1]

    async def collect(self, req: MergeRequest, partitions: int) -> Answers:
        """Merger: the answers to `req` of partitions 0..partitions-1."""
        found: list[list[PostCounts]] = []
        present: list[int] = []
        missing: list[int] = []
        for partition, doc in enumerate(await self.read_answers(partitions)):
            if doc and doc["request"] == req.request_id:
                found.append(decode_posts(doc["top"]))
                present.append(partition)
            else:
                missing.append(partition)
        return Answers(found, present, missing)


class ReconcileHook(Protocol):
    """What the merger needs from a reconciler (jobs.reconcile.BackgroundReconciler)."""

    @property
    def use_clickhouse(self) -> bool:
        """The drift policy's verdict: publish from ClickHouse instead of the merge."""

    async def run(self, snapshot: StreamSnapshot) -> asyncio.Task[ReconcileReport | None] | None:
        """Start comparing the stream's complete-window snapshot with ClickHouse."""

    async def stop(self) -> None:
        """Cancel a comparison still running (the worker is stopping)."""


class ReconcileRequests(Exchange):
    """Both sides of the complete-window exchange of one deployment."""

    def __init__(self, redis: Redis, settings: Settings | LiveSettings) -> None:
        self.live = live_of(settings)
        self.settings = settings = self.live.current
        self.app_id = settings.streamer_app_id
        self.hours = settings.job_trending_window_hours
        super().__init__(redis, reconcile_request_key(self.app_id, self.hours),
                         lambda partition: complete_snapshot_key(self.app_id, self.hours,
                                                                 partition))
        self.interval_ms = settings.job_reconcile_interval_sec * 1000
        self.last_request_ms = 0
        self.k = 2 * settings.job_trending_topk

    def _refresh(self) -> None:
        """Pick up reloaded settings (once per call from the tick)."""
        self.settings = self.live.current
        self.interval_ms = self.settings.job_reconcile_interval_sec * 1000
        self.k = 2 * self.settings.job_trending_topk

    async def answer(self, states: Mapping[int, PartitionState], now_ms: int) -> None:
        """Write the complete partial of every owned partition for an open request."""
        self._refresh()
        req = await self.open_request()
        if not req or not states:
            return
        k = int(req.get("k", self.k))  # the requester's depth decides, whatever ours is now
        window = window_of(req)
        docs = {}
        for partition, state in list(states.items()):  # a rebalance may change it meanwhile
            if state.can_compute(window):
                partial = state.complete_partial(window, k)
                docs[partition] = {"window_start_ms": window.start_ms,
                                   "total_events": partial.events,
                                   "top": encode_posts(partial.posts),
                                   "offset": (partial.offsets or [-1])[0]}
        if docs:
            await self.write_answers(docs, max(self.interval_ms, 120_000))

    async def drive(self, hook: ReconcileHook, partitions: int, now_ms: int) -> None:
        """Merger side: request on schedule, run the hook once every partition answered."""
        self._refresh()
        if now_ms - self.last_request_ms >= self.interval_ms:
            window = complete_window_at(now_ms, self.settings.window_minutes)
            await self.post({"window_start_ms": window.start_ms, "window_end_ms": window.end_ms,
                             "k": self.k}, self.interval_ms)
            self.last_request_ms = now_ms
            return
        snapshot = await self._collect(partitions)
        if snapshot is None:
            return
        await self.withdraw()
        try:
            await hook.run(snapshot)
        except Exception as exc:
            log.error("reconcile failed: %s: %s", type(exc).__name__, exc)

    async def _collect(self, partitions: int) -> StreamSnapshot | None:
        """The union of every partition's answer to the open request; None until all answered."""
        req = await self.open_request()
        if not req:
            return None
        window = window_of(req)
        docs = await self.read_answers(partitions)
        if any(d is None or d["window_start_ms"] != window.start_ms for d in docs):
            return None
        partials = [decode_posts(d["top"]) for d in docs if d]
        total = sum(int(d["total_events"]) for d in docs if d)
        depth = int(req.get("k", self.k))
        offsets = [int(d.get("offset", -1)) for d in docs if d]
        return StreamSnapshot(window, merge_partials(partials, depth), total,
                              list(range(partitions)), [], depth, offsets)
