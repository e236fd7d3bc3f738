"""Run planning: the recompute set covers every user whose list changed; encodings round-trip;
the degree cap."""

from __future__ import annotations

import hashlib
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.core.suggest import Suggestion, rank_sorted, rank_suggestions, suggest_for_user
from streamer.core.suggest_plan import (
    Snapshot,
    changed_accounts,
    decode_shard,
    decode_snapshot,
    encode_shard,
    encode_snapshot,
    recompute_set,
    split_shards,
)
from tests.test_core_suggest import oracle, same

Edge = tuple[int, int]
edges_st = st.lists(st.tuples(st.integers(0, 10), st.integers(0, 10)), max_size=60)
users_st = st.frozensets(st.integers(0, 12), max_size=12)


def fingerprints(edges: list[Edge]) -> dict[int, int]:
    """Stand-in for the ClickHouse fingerprint: a hash of each follower's sorted followees."""
    follows: dict[int, set[int]] = {}
    for a, b in edges:
        follows.setdefault(a, set()).add(b)
    return {
        a: int.from_bytes(hashlib.sha256(repr(sorted(bs)).encode()).digest()[:8], "little")
        for a, bs in follows.items()
    }


@settings(max_examples=300, deadline=None)
@given(edges_st, edges_st, users_st, users_st, st.integers(1, 6))
def test_users_outside_the_recompute_set_keep_their_list(
    before: list[Edge], after: list[Edge], active_before: frozenset[int],
    active_now: frozenset[int], limit: int,
) -> None:
    """Any active user whose brute-force list differs between the graphs is recomputed."""
    prev = Snapshot(fingerprints(before), active_before, "p")
    changed = changed_accounts(prev.fingerprints, fingerprints(after))
    followers = {a for a, b in after if b in changed}
    again = recompute_set(active_now, prev, changed, followers)
    for u in active_now - again:
        assert u in active_before
        assert oracle(u, after, limit) == oracle(u, before, limit)


fps_st = st.dictionaries(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))


@given(fps_st, users_st, st.text(max_size=20), fps_st)
def test_snapshot_round_trips(
    fps: dict[int, int], active: frozenset[int], params: str, blocks: dict[int, int]
) -> None:
    """Encode/decode keeps fingerprints, active users, parameters and block fingerprints."""
    back = decode_snapshot(encode_snapshot(Snapshot(fps, active, params, blocks)))
    assert back == Snapshot(fps, active, params, blocks)


def test_snapshot_of_an_earlier_version_has_no_blocks() -> None:
    """A snapshot written before blocks existed decodes with none (its params force a full run)."""
    raw = b'{"params":"per_user=20;cap=0","accounts":1,"active":1}\n' + bytes(8) * 2 + bytes(8)
    assert decode_snapshot(raw) == Snapshot({0: 0}, frozenset({0}), "per_user=20;cap=0", {})


@given(st.lists(st.integers(0, 2**64 - 1), unique=True), st.integers(1, 9), st.data())
def test_shards_partition_the_priority_order(users: list[int], shards: int, data: st.DataObject) -> None:
    """Shards are consecutive slices of the order (shard 0 first) and round-trip with flags."""
    parts = split_shards(users, shards)
    assert [u for p in parts for u in p] == users
    assert len(parts) == max(1, min(shards, len(users)))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    again = set(data.draw(st.sets(st.sampled_from(users))) if users else set())
    for p in parts:
        assert decode_shard(encode_shard(p, again)) == [(u, u in again) for u in p]


def test_changed_accounts_sees_gone_and_new_followers() -> None:
    """An account whose follows all went away, and one new follower, both count as changed."""
    assert changed_accounts({1: 5, 2: 6, 3: 7}, {1: 5, 3: 8, 4: 1}) == {2, 3, 4}


scored = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 4), st.sampled_from([1.0, 1.0 + 5e-10, 0.9, 0.5])),
    max_size=25, unique_by=lambda t: t[0],
)


@given(scored, st.integers(1, 8))
def test_rank_sorted_equals_rank_suggestions(rows: list[tuple[int, int, float]], limit: int) -> None:
    """The fast path over ClickHouse's exact order gives what the tolerant ranking gives."""
    ordered = sorted(rows, key=lambda r: (-r[2], -r[1], r[0]))
    want = rank_suggestions((Suggestion(c, s, m) for c, m, s in rows), limit)
    assert rank_sorted(ordered, limit) == want


async def test_degree_cap_skips_high_degree_intermediaries(clickhouse: ClickHouse) -> None:
    """With a cap, ClickHouse drops intermediaries above it exactly as the core does; 0 = exact."""
    rng = random.Random(11)
    edges = [(rng.randrange(40), rng.randrange(40)) for _ in range(500)]
    edges += [(1, c) for c in range(100, 130)]  # one high-degree intermediary
    await queries.insert_follows(clickhouse, [(a, b, 0) for a, b in edges])
    graph: dict[int, set[int]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    users = list(range(40))
    for cap in (0, 12, 25):
        got = await queries.suggestions(clickhouse, users, 6, cap)
        for u in users:
            assert _close(got[u], suggest_for_user(u, graph, 6, cap))
    exact = await queries.suggestions(clickhouse, users, 6)
    for u in users:
        same(exact[u], oracle(u, edges, 6))


def _close(a: list[Suggestion], b: list[Suggestion]) -> bool:
    """Same ids and mutual counts in order, scores within 1e-9."""
    return [(s.user_id, s.mutual_count) for s in a] == [(s.user_id, s.mutual_count) for s in b] and all(
        abs(x.score - y.score) <= 1e-9 for x, y in zip(a, b, strict=True)
    )


def test_run_keys_share_one_slot_and_name_their_owner() -> None:
    """Locks and claims are keyed by the public key space; run state is internal and carries the
    app id."""
    from streamer.core import payloads as p

    locks = [p.suggestions_run_lock_key(), p.suggestions_claim_key("t", 3)]
    state = [p.suggestions_state_key("app-x"), p.suggestions_snapshot_key("app-x"),
             p.suggestions_snapshot_key("app-x", "t"), p.suggestions_plan_key("app-x", "t", 3),
             p.suggestions_done_key("app-x", "t")]
    for key in locks + state:
        assert "{suggested_users}" in key
        assert key.count("{") == 1  # one hash tag: one Cluster slot for all of them
    # Locks guard the public key space; run state is internal, outside `nova:cache:*`.
    assert all(k.startswith("nova:cache:lock:") for k in locks)
    assert all(k.startswith("nova:streamer:{suggested_users}:app-x") for k in state)
    assert all("app-x" not in k for k in locks) and all("app-x" in k for k in state)
    assert len(set(locks + state)) == len(locks + state)


@given(scored, st.integers(1, 8), st.randoms(use_true_random=False))
def test_rank_sorted_repairs_ties_in_any_order(
    rows: list[tuple[int, int, float]], limit: int, rng: random.Random
) -> None:
    """Sorted by score only, equal scores in any order (groupArray promises no order): the
    ranking is still the tolerant ranking's."""
    shuffled = list(rows)
    rng.shuffle(shuffled)
    by_score = sorted(shuffled, key=lambda r: -r[2])  # stable: ties keep the shuffled order
    want = rank_suggestions((Suggestion(c, s, m) for c, m, s in rows), limit)
    assert rank_sorted(by_score, limit) == want
