"""Merge requests and partition answers over Redis: the merger names the window, workers answer.

Workers' clocks may differ: the merger writes a request naming the window of its own clock
(`window_at(now)`) under a fresh id; every worker polls the request key and answers, per owned
partition, with that partition's exact top-K over *that* window (a worker behind the merger
first advances its states to the merger's time; one ahead still holds the older minutes as
retained minutes). The merger accepts only answers to its current request id, so nothing
from an older request or another deployment is merged. All keys carry STREAMER_APP_ID and
share its hash tag, so the MGET of the answers works in a Redis Cluster too.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from streamer.core.partition_state import PartitionState
from streamer.core.payloads import merge_request_key, partial_key
from streamer.core.scoring import PostCounts
from streamer.core.window import Window, window_at
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings


def encode_posts(posts: Sequence[PostCounts]) -> list[list[int]]:
    """Compact rows [post_id, views, likes, comments, shares]: the one row codec of both
    exchanges (merge answers here, complete-window answers in `stream.reconcile_hook`)."""
    return [[p.post_id, p.views, p.likes, p.comments, p.shares] for p in posts]


def decode_posts(rows: Sequence[Sequence[int]]) -> list[PostCounts]:
    """Inverse of encode_posts."""
    return [PostCounts(*(int(x) for x in row)) for row in rows]


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """One merge: its id, the window it merges and the merger's clock when it asked."""

    request_id: str
    window: Window
    now_ms: int
    k: int  # entries every answer carries: the merger's JOB_TRENDING_TOPK decides (reloads)

    def to_json(self) -> bytes:
        """The request key's value."""
        return orjson.dumps({"id": self.request_id, "window_start_ms": self.window.start_ms,
                             "window_end_ms": self.window.end_ms, "now_ms": self.now_ms,
                             "k": self.k})

    @classmethod
    def from_json(cls, raw: bytes | str) -> MergeRequest:
        """Parse the request key's value."""
        doc = orjson.loads(raw)
        window = Window(int(doc["window_start_ms"]), int(doc["window_end_ms"]))
        return cls(str(doc["id"]), window, int(doc["now_ms"]), int(doc["k"]))


@dataclass(frozen=True, slots=True)
class Answers:
    """What the merger found for one request."""

    partials: list[list[PostCounts]]
    present: list[int]
    missing: list[int]


class MergeExchange:
    """Both sides of the request/answer exchange of one deployment."""

    def __init__(self, redis: Redis, settings: Settings | LiveSettings, owner: str) -> None:
        self.redis = redis
        self.live = live_of(settings)
        settings = self.live.current
        self.app_id = settings.streamer_app_id  # app id, window and its length: restart-only
        self.hours = settings.job_trending_window_hours
        self.window_minutes = settings.window_minutes
        self.owner = owner
        self.request_key = merge_request_key(self.app_id, self.hours)
        self.answered: tuple[str, set[int]] = ("", set())  # request id -> partitions answered

    @property
    def ttl_ms(self) -> int:
        """Requests and answers live as long as the trending key (reloadable interval)."""
        return int(self.live.current.trending_ttl_ms)

    async def request(self, now_ms: int, k: int) -> MergeRequest:
        """Merger: name the window of `now_ms` and the depth `k` under a fresh id."""
        req = MergeRequest(f"{now_ms}-{secrets.token_hex(4)}",
                           window_at(now_ms, self.window_minutes), now_ms, k)
        await self.redis.set(self.request_key, req.to_json(), px=self.ttl_ms)
        return req

    async def current(self) -> MergeRequest | None:
        """Worker: the open request, if any."""
        raw = await self.redis.get(self.request_key)
        return MergeRequest.from_json(raw) if raw else None

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
        async with self.redis.pipeline(transaction=False) as pipe:
            for partition, state in todo:
                top = (state.top(req.k) if req.window == current
                       else state.complete_partial(req.window, req.k).posts)
                doc: dict[str, Any] = {"request": req.request_id, "partition": partition,
                                       "window_start_ms": req.window.start_ms,
                                       "window_end_ms": req.window.end_ms,
                                       "owner": self.owner, "top": encode_posts(top)}
                pipe.set(partial_key(self.app_id, self.hours, partition), orjson.dumps(doc),
                         px=self.ttl_ms)
            await pipe.execute()
        done.update(p for p, _ in todo)
        return [p for p, _ in todo]

    def has_answered(self, request_id: str, partitions: Iterable[int]) -> bool:
        """Whether this worker already answered `request_id` for every one of `partitions`."""
        return self.answered[0] == request_id and not set(partitions) - self.answered[1]

    async def collect(self, req: MergeRequest, partitions: int) -> Answers:
        """Merger: the answers to `req` of partitions 0..partitions-1."""
        keys = [partial_key(self.app_id, self.hours, p) for p in range(partitions)]
        found: list[list[PostCounts]] = []
        present: list[int] = []
        missing: list[int] = []
        for partition, raw in enumerate(await self.redis.mget(keys)):
            doc: dict[str, Any] | None = orjson.loads(raw) if raw else None
            if doc and doc["request"] == req.request_id:
                found.append(decode_posts(doc["top"]))
                present.append(partition)
            else:
                missing.append(partition)
        return Answers(found, present, missing)
