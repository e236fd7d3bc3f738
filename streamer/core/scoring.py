"""The trending score and its exact integer ranking key."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

# Weights x10 so the ranking key is an exact integer: views 0.1, likes 2, comments 3, shares 5.
RANK_WEIGHTS: tuple[int, int, int, int] = (1, 20, 30, 50)


def rank_value(views: int, likes: int, comments: int, shares: int) -> int:
    """10 x score, exactly: the value posts are ranked by."""
    return views + 20 * likes + 30 * comments + 50 * shares


def score_of_rank(rank: int) -> float:
    """The published score: the float nearest to rank / 10 (e.g. 573 -> 57.3)."""
    return rank / 10


def rank_key(rank: int, post_id: int) -> tuple[int, int]:
    """Sort key: rank descending, then post_id ascending."""
    return (-rank, post_id)


@dataclass(frozen=True, slots=True)
class PostCounts:
    """The four counters of one post over a window."""

    post_id: int
    views: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0

    @property
    def rank(self) -> int:
        """Exact integer ranking value."""
        return rank_value(self.views, self.likes, self.comments, self.shares)

    @property
    def score(self) -> float:
        """Published score."""
        return score_of_rank(self.rank)

    @property
    def key(self) -> tuple[int, int]:
        """Sort key for ranking."""
        return rank_key(self.rank, self.post_id)

    def to_payload(self) -> dict[str, Any]:
        """One entry of the trending array."""
        return {
            "post_id": self.post_id,
            "score": self.score,
            "views": self.views,
            "likes": self.likes,
            "comments": self.comments,
            "shares": self.shares,
        }

    @classmethod
    def from_payload(cls, obj: dict[str, Any]) -> PostCounts:
        """Parse one entry of the trending array."""
        return cls(
            int(obj["post_id"]), int(obj["views"]), int(obj["likes"]),
            int(obj["comments"]), int(obj["shares"]),
        )


def rank_posts(posts: list[PostCounts], k: int) -> list[PostCounts]:
    """Top k posts by the contract's order, dropping posts with no counted event."""
    nonzero = [p for p in posts if p.views or p.likes or p.comments or p.shares]
    return sorted(nonzero, key=lambda p: p.key)[:k]


def merge_partials(partials: Iterable[Iterable[PostCounts]], k: int) -> list[PostCounts]:
    """Exact global top-k from per-partition top-k lists (posts never span partitions)."""
    best: dict[int, PostCounts] = {}
    for partial in partials:
        for post in partial:
            seen = best.get(post.post_id)
            if seen is None or post.rank > seen.rank:
                best[post.post_id] = post
    return heapq.nsmallest(k, (p for p in best.values() if p.rank > 0), key=lambda p: p.key)
