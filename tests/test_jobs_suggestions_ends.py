"""Follows and blocks that end, and the popular fallback: full and incremental runs of the job
(built as `streamer jobs` and as the stream worker build it) against a brute-force recount of
the contract written here from the raw rows (real Redis + embedded ClickHouse)."""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.core.suggest import Suggestion
from streamer.jobs.suggestions import SuggestionsJob
from streamer.settings.live import LiveSettings
from streamer.settings.model import Settings
from tests.test_clickhouse_queries import NOW
from tests.test_jobs_suggestions import stored
from tests.test_jobs_suggestions_runs import activate, reset, run_ok, small

Row = tuple[str, int, int, int, int]  # table, a, b, created_at ms, deleted
Want = tuple[int, float, int]
USERS = 10
PER_USER = 4
TOL = 1e-9


def current(rows: Iterable[Row], table: str) -> set[tuple[int, int]]:
    """Pairs whose latest row (greatest created_at, deleted winning a tie) is not deleted."""
    latest: dict[tuple[int, int], tuple[int, int]] = {}
    for t, a, b, ts, deleted in rows:
        if t == table and ((a, b) not in latest or (ts, deleted) > latest[(a, b)]):
            latest[(a, b)] = (ts, deleted)
    return {pair for pair, (_, deleted) in latest.items() if deleted == 0}


def recount(user: int, rows: list[Row], fallback: bool, limit: int = PER_USER) -> list[Want]:
    """The contract's list for `user`, from nothing but the raw rows."""
    follows, blocks = current(rows, "follows"), current(rows, "blocks")
    f_u = {b for a, b in follows if a == user}
    blocked = {b for a, b in blocks if a == user} | {a for a, b in blocks if b == user}

    def out_of(x: int) -> set[int]:
        return {b for a, b in follows if a == x}

    found = []
    for c in {c for f in f_u for c in out_of(f)} - {user} - f_u - blocked:
        via = [f for f in f_u if c in out_of(f)]
        found.append((c, math.fsum(1 / math.log(2 + len(out_of(f))) for f in via), len(via)))

    def order(x: Want, y: Want) -> int:
        if abs(x[1] - y[1]) > TOL:
            return -1 if x[1] > y[1] else 1
        return (y[2] - x[2]) or (x[0] - y[0])

    ranked = sorted(found, key=functools.cmp_to_key(order))[:limit]
    if not fallback:
        return ranked
    counts: dict[int, int] = {}
    for _, b in follows:
        counts[b] = counts.get(b, 0) + 1
    for c in sorted(counts, key=lambda x: (-counts[x], x)):
        if len(ranked) < limit and c != user and c not in f_u | blocked | {r[0] for r in ranked}:
            ranked.append((c, 0.0, 0))
    return ranked


async def append(ch: ClickHouse, rows: list[Row]) -> None:
    """Rows as producers append them (follows, unfollows, blocks, unblocks)."""
    for table in ("follows", "blocks"):
        part = [(a, b, NOW - 10_000 + ts, d) for t, a, b, ts, d in rows if t == table]
        if part:
            await queries.insert_edge_rows(ch, table, part)


async def check(redis: Redis, rows: list[Row], active: set[int], fallback: bool) -> None:
    """Every active user's key equals the recount; nobody else has one."""
    got: dict[int, list[Suggestion]] = await stored(redis)
    assert set(got) == active
    for u in sorted(active):
        want = recount(u, rows, fallback)
        assert [(s.user_id, s.mutual_count) for s in got[u]] == [(c, m) for c, _, m in want], u
        assert all(abs(s.score - w[1]) <= TOL for s, w in zip(got[u], want, strict=True))


def build(s: Settings, ch: ClickHouse, redis: Redis, worker: bool, run_no: int) -> SuggestionsJob:
    """The job as the stream worker builds it (live settings, runs when due) or as
    `streamer jobs --once` does; the n-th run one interval after the previous one."""
    now_ms = NOW + run_no * s.job_suggestion_interval_sec * 1000
    if worker:
        return SuggestionsJob(LiveSettings(s, {}), ch, redis, clock=lambda: now_ms)
    return SuggestionsJob(s, ch, redis, clock=lambda: now_ms, once=True)


def changes(rng: random.Random, pairs: list[tuple[int, int]], count: int, tables: str) -> list[Row]:
    """Rows for new pairs or pairs seen before: starts, ends, and ties (a start and its end at
    the same created_at, the end appended last or first); `tables` "fb": follows and blocks."""
    rows: list[Row] = []
    for _ in range(count):
        table = "blocks" if rng.choice(tables) == "b" else "follows"
        a, b = rng.choice(pairs) if pairs and rng.random() < 0.7 else (
            rng.randrange(USERS), rng.randrange(USERS))
        ts = rng.randrange(5)
        kind = rng.choice(["start", "start", "end", "tie"])
        if kind == "tie":
            ends_last = rng.random() < 0.5
            rows += [(table, a, b, ts, int(not ends_last)), (table, a, b, ts, int(ends_last))]
        else:
            rows.append((table, a, b, ts, int(kind == "end")))
    return rows


def scenario(seed: int, follows_change: bool) -> tuple[list[Row], list[Row], set[int]]:
    """Rows before the first run, rows appended after it, and the active users."""
    rng = random.Random(seed)
    before = changes(rng, [], rng.randrange(15, 45), "ffb")
    seen = {(a, b) for _, a, b, _, _ in before}
    two_hops = {(a, c) for a, b in seen for b2, c in seen if b == b2}  # users and candidates
    pairs = sorted({(y, x) for x, y in seen | two_hops} | seen | two_hops)
    after = changes(rng, pairs, rng.randrange(1, 10), "ffb") if follows_change else []
    after += changes(rng, sorted(two_hops), rng.randrange(1, 4), "b")  # blocks that matter
    active = {u for u in range(USERS) if rng.random() < 0.8} or {0}
    return before, after, active


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10**9), follows_change=st.booleans(), fallback=st.booleans(),
       worker=st.booleans())
async def test_runs_equal_the_recount_of_raw_rows(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings, seed: int,
    follows_change: bool, fallback: bool, worker: bool,
) -> None:
    """Full run, then unfollows, re-follows (ties included), blocks and unblocks appended, in
    any created_at order: the incremental run and a full run both equal the recount."""
    before, after, active = scenario(seed, follows_change)
    await reset(clickhouse, redis_client)
    s = small(settings, job_suggestions_per_user=PER_USER).model_copy(
        update={"job_suggestion_fallback": "popular" if fallback else "none"})
    await append(clickhouse, before)
    await activate(clickhouse, active, "a")
    await run_ok(build(s, clickhouse, redis_client, worker, 0), redis_client)
    await check(redis_client, before, active, fallback)
    await append(clickhouse, after)
    second = build(s, clickhouse, redis_client, worker, 1)
    await run_ok(second, redis_client)
    assert (await second.store.state()).mode == "incremental"  # type: ignore[union-attr]
    await check(redis_client, before + after, active, fallback)
    third = SuggestionsJob(s, clickhouse, redis_client, clock=lambda: NOW + 1, once=True, full=True)
    await run_ok(third, redis_client)
    await check(redis_client, before + after, active, fallback)


@pytest.mark.parametrize("worker", [False, True])
async def test_unfollow_block_and_fallback_by_hand(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings, worker: bool
) -> None:
    """A worked example: 1 follows 2, 2 follows 3 and 4; 1 unfollows then re-follows 2 at the
    same instant (the unfollow wins), 4 blocks 1; a new user 9 gets the popular accounts."""
    await reset(clickhouse, redis_client)
    s = small(settings, job_suggestions_per_user=PER_USER).model_copy(
        update={"job_suggestion_fallback": "popular"})
    rows: list[Row] = [("follows", 1, 2, 0, 0), ("follows", 2, 3, 0, 0), ("follows", 2, 4, 0, 0),
                       ("follows", 5, 4, 0, 0)]
    await append(clickhouse, rows)
    await activate(clickhouse, {1, 9}, "a")
    await run_ok(build(s, clickhouse, redis_client, worker, 0), redis_client)
    got = await stored(redis_client)
    assert [(x.user_id, x.mutual_count) for x in got[1]] == [(3, 1), (4, 1)]
    assert [(x.user_id, x.score) for x in got[9]] == [(4, 0.0), (2, 0.0), (3, 0.0)]
    more: list[Row] = [("follows", 1, 2, 1, 1), ("follows", 1, 2, 1, 0), ("blocks", 4, 9, 1, 0)]
    await append(clickhouse, more)
    await run_ok(build(s, clickhouse, redis_client, worker, 1), redis_client)
    got = await stored(redis_client)
    assert [(x.user_id, x.mutual_count) for x in got[1]] == [(4, 0), (3, 0)]  # popular only
    assert [x.user_id for x in got[9]] == [3]  # 2 lost its follower; 4 blocks 9
    await check(redis_client, rows + more, {1, 9}, True)


async def test_a_block_and_an_unblock_are_changes_of_both_accounts(
    clickhouse: ClickHouse, redis_client: Redis, settings: Settings
) -> None:
    """0 follows 1, 1 follows 2 and 3: 2 blocks 0, then 0 blocks 3, then both unblock; each
    incremental run shows it (nothing else changed, so only the block can tell)."""
    await reset(clickhouse, redis_client)
    s = small(settings, job_suggestions_per_user=PER_USER)
    rows: list[Row] = [("follows", 0, 1, 0, 0), ("follows", 1, 2, 0, 0), ("follows", 1, 3, 0, 0)]
    await append(clickhouse, rows)
    await activate(clickhouse, {0, 2, 3}, "a")
    steps: list[tuple[list[Row], list[int]]] = [
        ([], [2, 3]), ([("blocks", 2, 0, 1, 0)], [3]), ([("blocks", 0, 3, 1, 0)], []),
        ([("blocks", 2, 0, 2, 1), ("blocks", 0, 3, 2, 1)], [2, 3]),
    ]
    for run_no, (more, want) in enumerate(steps):
        rows += more
        await append(clickhouse, more)
        j = build(s, clickhouse, redis_client, False, run_no)
        await run_ok(j, redis_client)
        assert (await j.store.state()).mode == ("incremental" if run_no else "full")  # type: ignore[union-attr]
        assert [x.user_id for x in (await stored(redis_client))[0]] == want
        await check(redis_client, rows, {0, 2, 3}, False)
