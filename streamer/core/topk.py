"""Top-K: an incremental index kept in step with totals, and the exact merge of partials."""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from sortedcontainers import SortedList

from streamer.core.scoring import PostCounts


class TopKIndex:
    """Posts ordered by (rank desc, post_id asc); O(log n) update, O(k) top-k read."""

    __slots__ = ("_keys", "_rank")

    def __init__(self) -> None:
        self._keys: SortedList = SortedList()
        self._rank: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._rank)

    def update(self, post_id: int, rank: int) -> None:
        """Set a post's rank; rank 0 removes it."""
        old = self._rank.get(post_id)
        if old == rank:
            return
        if old is not None:
            self._keys.remove((-old, post_id))
        if rank > 0:
            self._rank[post_id] = rank
            self._keys.add((-rank, post_id))
        elif old is not None:
            del self._rank[post_id]

    def top(self, k: int) -> list[tuple[int, int]]:
        """The first k (post_id, rank) pairs in rank order."""
        return [(post_id, -neg) for neg, post_id in self._keys.islice(0, k)]


def merge_partials(partials: Iterable[Iterable[PostCounts]], k: int) -> list[PostCounts]:
    """Exact global top-k from per-partition top-k lists (posts never span partitions)."""
    best: dict[int, PostCounts] = {}
    for partial in partials:
        for post in partial:
            seen = best.get(post.post_id)
            if seen is None or post.rank > seen.rank:
                best[post.post_id] = post
    return heapq.nsmallest(k, (p for p in best.values() if p.rank > 0), key=lambda p: p.key)
