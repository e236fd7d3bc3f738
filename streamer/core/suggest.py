"""Suggested users: Adamic-Adar over second-degree follows, ranked as the contract says."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCORE_TOLERANCE = 1e-9


@dataclass(frozen=True, slots=True)
class Suggestion:
    """One suggested account for a user."""

    user_id: int
    score: float
    mutual_count: int

    def to_payload(self) -> dict[str, Any]:
        """One entry of the suggestions array."""
        return {"user_id": self.user_id, "score": self.score, "mutual_count": self.mutual_count}


def adamic_adar_weight(out_degree: int) -> float:
    """Contribution of one intermediary f with |F(f)| = out_degree."""
    return 1.0 / math.log(2 + out_degree)


def rank_suggestions(candidates: Iterable[Suggestion], limit: int) -> list[Suggestion]:
    """Score desc (ties within 1e-9), then mutual_count desc, then user_id asc; keep `limit`."""
    by_score = sorted(candidates, key=lambda s: (-s.score, -s.mutual_count, s.user_id))
    ranked: list[Suggestion] = []
    group: list[Suggestion] = []
    for cand in by_score:
        if group and group[-1].score - cand.score > SCORE_TOLERANCE:
            ranked.extend(sorted(group, key=lambda s: (-s.mutual_count, s.user_id)))
            group = []
            if len(ranked) >= limit:
                break
        group.append(cand)
    ranked.extend(sorted(group, key=lambda s: (-s.mutual_count, s.user_id)))
    return ranked[:limit]


def suggest_for_user(
    user_id: int, follows: Mapping[int, Iterable[int]], limit: int, degree_cap: int = 0
) -> list[Suggestion]:
    """Brute-force suggestions for one user from an adjacency map (follower -> followees);
    with degree_cap > 0, intermediaries following more than degree_cap accounts are skipped."""
    direct = set(follows.get(user_id, ()))
    score: dict[int, float] = {}
    mutual: dict[int, int] = {}
    for friend in sorted(direct):
        second = set(follows.get(friend, ()))
        if degree_cap and len(second) > degree_cap:
            continue
        weight = adamic_adar_weight(len(second))
        for cand in second:
            if cand == user_id or cand in direct:
                continue
            score[cand] = score.get(cand, 0.0) + weight
            mutual[cand] = mutual.get(cand, 0) + 1
    return rank_suggestions((Suggestion(c, score[c], mutual[c]) for c in score), limit)


def rank_sorted(items: Sequence[tuple[int, int, float]], limit: int) -> list[Suggestion]:
    """`rank_suggestions` for (user_id, mutual, score) rows already sorted by exact score desc,
    mutual desc, user_id asc: unless a near-tie (0 < gap <= 1e-9) joins groups, that order is final."""
    for i in range(len(items) - 1):
        gap = items[i][2] - items[i + 1][2]
        # groupArray keeps the subquery's order in practice, not by contract: check ties too.
        tie_out_of_order = gap == 0 and (items[i][1], -items[i][0]) < (items[i + 1][1], -items[i + 1][0])
        if gap < 0 or 0 < gap <= SCORE_TOLERANCE or tie_out_of_order:
            return rank_suggestions((Suggestion(c, s, m) for c, m, s in items), limit)
        if i + 1 >= limit and gap > SCORE_TOLERANCE:
            break  # the group at the cut ends here
    return [Suggestion(c, s, m) for c, m, s in items[:limit]]


def top_up(
    user_id: int, listed: Sequence[Suggestion], popular: Iterable[int], excluded: Collection[int],
    limit: int,
) -> list[Suggestion]:
    """A short list filled from the popular accounts in order (score 0.0, mutual_count 0),
    skipping u, the accounts in `excluded` (followed, in a block) and those already listed."""
    out = list(listed[:limit])
    taken = {s.user_id for s in out}
    for account in popular:
        if len(out) >= limit:
            break
        if account == user_id or account in excluded or account in taken:
            continue
        out.append(Suggestion(account, 0.0, 0))
        taken.add(account)
    return out
