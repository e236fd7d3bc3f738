"""Deterministic synthetic data: power-law follow graph and Zipf-popular engagement events."""

from __future__ import annotations

import random
from array import array
from collections.abc import Callable, Iterator
from itertools import accumulate
from typing import TYPE_CHECKING

from streamer.clock import wall_ms
from streamer.core.events import Event

if TYPE_CHECKING:
    from streamer.clickhouse.client import ClickHouse

TYPE_WEIGHTS = (("view", 80), ("like", 12), ("comment", 5), ("share", 3))


def follow_edges(users: int, avg_degree: int, seed: int = 7) -> Iterator[tuple[int, int]]:
    """Directed edges with power-law in-degree (preferential attachment), no self-follows,
    streamed in (follower, followee) order; memory: the attachment targets, 4 bytes each."""
    rng = random.Random(seed)
    targets = array("I" if users < 2**32 else "Q", range(1, min(users, 5) + 1))
    for follower in range(1, users + 1):
        degree = max(1, min(users - 1, int(rng.paretovariate(1.5) * avg_degree / 3)))
        mine: set[int] = set()
        for _ in range(degree):
            followee = rng.choice(targets) if rng.random() < 0.8 else rng.randint(1, users)
            if followee != follower:
                mine.add(followee)
                targets.append(followee)
        for followee in sorted(mine):
            yield follower, followee


def follow_graph(users: int, avg_degree: int, seed: int = 7) -> list[tuple[int, int]]:
    """All edges of follow_edges as a list (small graphs: tests, benchmarks)."""
    return list(follow_edges(users, avg_degree, seed))


# Shares of the sample's follows that end (unfollow) and of those that start again (re-follow);
# share of accounts that block someone, and of blocks that end (unblock).
UNFOLLOW_SHARE = 0.02
REFOLLOW_SHARE = 0.3
BLOCKER_SHARE = 0.002
UNBLOCK_SHARE = 0.25
_HOUR_MS = 3_600_000

EdgeRow = tuple[str, int, int, int, int]  # table, a, b, created_at ms, deleted


def graph_rows(users: int, avg_degree: int, now_ms: int, seed: int = 7) -> Iterator[EdgeRow]:
    """The sample's follows and blocks as producers append them: every edge of follow_edges
    followed 3 h ago, some unfollowed 2 h ago and re-followed 1 h ago; some accounts block one
    account 2 h ago, some unblock 1 h ago. Streamed; the graph is follow_edges' for the seed."""
    rng = random.Random(seed + 1)
    follower = 0
    for a, b in follow_edges(users, avg_degree, seed):
        if a != follower:
            follower = a
            yield from _block_rows(rng, a, users, now_ms)
        yield "follows", a, b, now_ms - 3 * _HOUR_MS, 0
        if rng.random() < UNFOLLOW_SHARE:
            yield "follows", a, b, now_ms - 2 * _HOUR_MS, 1
            if rng.random() < REFOLLOW_SHARE:
                yield "follows", a, b, now_ms - _HOUR_MS, 0


def _block_rows(rng: random.Random, blocker: int, users: int, now_ms: int) -> Iterator[EdgeRow]:
    if users > 1 and rng.random() < BLOCKER_SHARE:
        blocked = rng.randint(1, users)
        if blocked != blocker:
            yield "blocks", blocker, blocked, now_ms - 2 * _HOUR_MS, 0
            if rng.random() < UNBLOCK_SHARE:
                yield "blocks", blocker, blocked, now_ms - _HOUR_MS, 1


class GraphTally:
    """Counts of a streamed sample graph, and the shape of its current follows."""

    def __init__(self, users: int, now_ms: int) -> None:
        self.refollow_ms = now_ms - _HOUR_MS
        self.rows: dict[str, int] = {"follows": 0, "unfollows": 0, "refollows": 0, "blocks": 0,
                                     "unblocks": 0}
        self.followers = array("I", bytes(4 * (users + 1)))  # current followers per account

    def add(self, row: EdgeRow) -> None:
        """Count one row (rows of a pair arrive in time order)."""
        table, _, b, ts, deleted = row
        if table == "blocks":
            self.rows["unblocks" if deleted else "blocks"] += 1
            return
        self.followers[b] += -1 if deleted else 1
        kind = "unfollows" if deleted else "refollows" if ts == self.refollow_ms else "follows"
        self.rows[kind] += 1

    def stats(self) -> dict[str, int]:
        """Current edges, follower-count shape, and how many of each row kind."""
        counts = sorted(c for c in self.followers if c)
        return {
            "edges": sum(counts),
            "max_followers": counts[-1] if counts else 0,
            "median_followers": counts[len(counts) // 2] if counts else 0,
            **self.rows,
        }


async def load_graph_rows(
    ch: ClickHouse, users: int, avg_degree: int, now_ms: int, chunk: int = 50_000,
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Stream the sample's follows and blocks into ClickHouse in chunks (bounded memory)."""
    from streamer.clickhouse import queries

    tally = GraphTally(users, now_ms)
    parts: dict[str, list[tuple[int, int, int, int]]] = {"follows": [], "blocks": []}
    for row in graph_rows(users, avg_degree, now_ms):
        tally.add(row)
        part = parts[row[0]]
        part.append(row[1:])
        if len(part) >= chunk:
            await queries.insert_edge_rows(ch, row[0], part)
            part.clear()
            if progress is not None:
                progress(row[1])
    for table, part in parts.items():
        if part:
            await queries.insert_edge_rows(ch, table, part)
    return tally.stats()


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def events(
    count: int, posts: int, users: int, now_ms: int, span_ms: int, seed: int = 11
) -> Iterator[Event]:
    """`count` valid events spread over [now - span, now], Zipf over posts and users."""
    rng = random.Random(seed)
    post_ids = list(range(1, posts + 1))
    rng.shuffle(post_ids)
    # Cumulative weights once (choices() would sum a million weights again per chunk).
    post_w = list(accumulate(_zipf_weights(posts)))
    user_w = list(accumulate(_zipf_weights(users, 0.8)))
    kinds = [k for k, _ in TYPE_WEIGHTS]
    kind_w = [w for _, w in TYPE_WEIGHTS]
    chunk = 4096
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        ps = rng.choices(post_ids, cum_weights=post_w, k=n)
        us = rng.choices(range(1, users + 1), cum_weights=user_w, k=n)
        ks = rng.choices(kinds, kind_w, k=n)
        for i in range(n):
            ts = now_ms - rng.randrange(span_ms)
            yield Event(f"ev-{seed}-{start + i}", ps[i], us[i], ks[i], ts)


async def _load_graph(users: int, avg_follows: int, chunk: int) -> dict[str, int]:
    """Schema, then the follow graph in chunks, reporting progress as JSON lines on stdout."""

    from streamer.clickhouse.client import ClickHouse
    from streamer.clickhouse.schema import create_schema
    from streamer.settings.model import load_settings

    ch = ClickHouse.from_settings(load_settings())
    _progress("schema", 0, 1)
    await create_schema(ch)
    _progress("schema", 1, 1)
    _progress("graph", 0, users)
    stats = await load_graph_rows(ch, users, avg_follows, wall_ms(), chunk,
                                  progress=lambda done: _progress("follows", done, users))
    _progress("graph", users, users)
    return stats


def _progress(step: str, done: int, total: int, **extra: int) -> None:
    import orjson

    line = orjson.dumps({"step": step, "done": done, "total": total, **extra})
    print(line.decode(), flush=True)


def load_graph_main(argv: list[str] | None = None) -> int:
    """Child-process entry of the demo: it opens the embedded ClickHouse, loads, and exits.

    chDB lets one process own a data directory, and a session lives as long as its process,
    so the demo does this in a short child before the worker (which owns it afterwards) starts.
    """
    import argparse
    import asyncio

    p = argparse.ArgumentParser(prog="python -m streamer.demo.generate")
    p.add_argument("--users", type=int, required=True)
    p.add_argument("--avg-follows", type=int, default=20)
    p.add_argument("--chunk", type=int, default=20_000)
    args = p.parse_args(argv)
    stats = asyncio.run(_load_graph(args.users, args.avg_follows, args.chunk))
    _progress("done", 1, 1, **stats)
    return 0


if __name__ == "__main__":
    raise SystemExit(load_graph_main())
