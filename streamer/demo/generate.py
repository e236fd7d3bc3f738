"""Deterministic synthetic data: power-law follow graph and Zipf-popular engagement events."""

from __future__ import annotations

import random
from collections.abc import Iterator

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
