"""Deterministic synthetic data: power-law follow graph and Zipf-popular engagement events."""

from __future__ import annotations

import random
from collections.abc import Iterator

from streamer.clock import wall_ms
from streamer.core.events import Event

TYPE_WEIGHTS = (("view", 80), ("like", 12), ("comment", 5), ("share", 3))


def follow_graph(users: int, avg_degree: int, seed: int = 7) -> list[tuple[int, int]]:
    """Directed edges with power-law in-degree (preferential attachment), no self-follows."""
    rng = random.Random(seed)
    edges: set[tuple[int, int]] = set()
    targets: list[int] = list(range(1, min(users, 5) + 1))
    for follower in range(1, users + 1):
        degree = max(1, min(users - 1, int(rng.paretovariate(1.5) * avg_degree / 3)))
        for _ in range(degree):
            followee = rng.choice(targets) if rng.random() < 0.8 else rng.randint(1, users)
            if followee != follower:
                edges.add((follower, followee))
                targets.append(followee)
    return sorted(edges)


def _zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, n + 1)]


def events(
    count: int, posts: int, users: int, now_ms: int, span_ms: int, seed: int = 11
) -> Iterator[Event]:
    """`count` valid events spread over [now - span, now], Zipf over posts and users."""
    rng = random.Random(seed)
    post_ids = list(range(1, posts + 1))
    rng.shuffle(post_ids)
    post_w = _zipf_weights(posts)
    user_w = _zipf_weights(users, 0.8)
    kinds = [k for k, _ in TYPE_WEIGHTS]
    kind_w = [w for _, w in TYPE_WEIGHTS]
    chunk = 4096
    for start in range(0, count, chunk):
        n = min(chunk, count - start)
        ps = rng.choices(post_ids, post_w, k=n)
        us = rng.choices(range(1, users + 1), user_w, k=n)
        ks = rng.choices(kinds, kind_w, k=n)
        for i in range(n):
            ts = now_ms - rng.randrange(span_ms)
            yield Event(f"ev-{seed}-{start + i}", ps[i], us[i], ks[i], ts)


def graph_stats(edges: list[tuple[int, int]]) -> dict[str, int]:
    """Shape of a follow graph in numbers a person can read (power law: max >> median)."""
    followers: dict[int, int] = {}
    for _, followee in edges:
        followers[followee] = followers.get(followee, 0) + 1
    counts = sorted(followers.values())
    return {
        "edges": len(edges),
        "max_followers": counts[-1] if counts else 0,
        "median_followers": counts[len(counts) // 2] if counts else 0,
    }


async def _load_graph(users: int, avg_follows: int, chunk: int) -> dict[str, int]:
    """Schema, then the follow graph in chunks, reporting progress as JSON lines on stdout."""

    from streamer.clickhouse import queries
    from streamer.clickhouse.client import ClickHouse
    from streamer.clickhouse.schema import create_schema
    from streamer.settings.model import load_settings

    ch = ClickHouse.from_settings(load_settings())
    _progress("schema", 0, 1)
    await create_schema(ch)
    _progress("schema", 1, 1)
    _progress("graph", 0, users)
    edges = follow_graph(users, avg_follows)
    _progress("graph", users, users)
    now_ms = wall_ms()
    for start in range(0, len(edges), chunk):
        part = edges[start : start + chunk]
        await queries.insert_follows(ch, [(a, b, now_ms) for a, b in part])
        _progress("follows", start + len(part), len(edges))
    return graph_stats(edges)


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
