"""ClickHouse batch queries on generated data vs brute-force recomputation in Python."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import pytest

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse, ClickHouseError
from streamer.clickhouse.schema import create_schema, ddl
from streamer.core.events import Event
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.suggest import Suggestion
from streamer.core.window import MINUTE_MS, Window, window_at
from tests.test_core_suggest import oracle as suggest_oracle
from tests.test_core_suggest import same

NOW = (time.time_ns() // 1_000_000 // MINUTE_MS) * MINUTE_MS + 37_123  # TTL keeps 30 days
DAY = 86_400_000
TYPES = ("view", "like", "comment", "share")


@dataclass
class Dataset:
    """Events as inserted (with repeats) and the follow edges as inserted (with repeats)."""

    rows: list[Event]
    edges: list[tuple[int, int]]

    def distinct(self) -> list[Event]:
        """Each event_id once."""
        return list({e.event_id: e for e in self.rows}.values())


def make_events(rng: random.Random, n: int, posts: int, users: int, span_ms: int) -> list[Event]:
    """Events over [NOW - span, NOW + 10 min] with a skew towards a few posts."""
    out = []
    for i in range(n):
        post = int(rng.paretovariate(1.2)) % posts
        ts = NOW - rng.randrange(span_ms) + rng.randrange(10 * MINUTE_MS)
        out.append(Event(f"e{i}", post, rng.randrange(users), rng.choice(TYPES), ts))
    return out


def boundary_events(window: Window) -> list[Event]:
    """Events exactly on and next to both window bounds, on posts of their own."""
    return [
        Event("b-start", 900, 1, "share", window.start_ms),  # in
        Event("b-before", 901, 1, "share", window.start_ms - 1),  # out
        Event("b-last", 902, 1, "share", window.end_ms - 1),  # in
        Event("b-end", 903, 1, "share", window.end_ms),  # out
    ]


def with_repeats(rng: random.Random, events: list[Event]) -> list[Event]:
    """Every event once, a third of them again 1-3 times (redeliveries)."""
    out = list(events)
    for e in events:
        if rng.random() < 0.33:
            out.extend([e] * rng.randint(1, 3))
    rng.shuffle(out)
    return out


async def load(ch: ClickHouse, data: Dataset) -> None:
    """Insert in several batches so repeats land in different parts."""
    for start in range(0, len(data.rows), 700):
        await queries.insert_events(ch, data.rows[start : start + 700])
    if data.edges:
        await queries.insert_follows(ch, [(a, b, NOW) for a, b in data.edges])
        await queries.insert_follows(ch, [(a, b, NOW) for a, b in data.edges[: len(data.edges) // 3]])


def oracle_trending(events: list[Event], window: Window, k: int) -> list[PostCounts]:
    """Recount distinct events inside [start, end) and rank them."""
    counts: dict[int, list[int]] = {}
    for e in events:
        if window.start_ms <= e.ts_ms < window.end_ms and e.event_type in TYPES:
            counts.setdefault(e.post_id, [0, 0, 0, 0])[TYPES.index(e.event_type)] += 1
    return rank_posts([PostCounts(p, *c) for p, c in counts.items()], k)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_trending_equals_brute_force(clickhouse: ClickHouse, seed: int) -> None:
    """Duplicated event ids, old and future events, exact bounds: top-k equals the recount."""
    rng = random.Random(seed)
    window = window_at(NOW, 60)
    events = make_events(rng, 2500, 60, 40, 3 * 3_600_000) + boundary_events(window)
    data = Dataset(with_repeats(rng, events), [])
    await load(clickhouse, data)
    for k in (1, 5, 50, 10_000):
        got = await queries.trending(clickhouse, window, k)
        assert got == oracle_trending(data.distinct(), window, k)
    full = await queries.trending(clickhouse, window, 10_000)
    ids = {p.post_id for p in full}
    assert {900, 902} <= ids and not {901, 903} & ids


async def test_trending_other_window_lengths(clickhouse: ClickHouse) -> None:
    """A 2-hour window and a 1-minute window over the same data."""
    rng = random.Random(9)
    events = make_events(rng, 1500, 30, 20, 4 * 3_600_000)
    data = Dataset(with_repeats(rng, events), [])
    await load(clickhouse, data)
    for minutes in (1, 120):
        window = window_at(NOW, minutes)
        assert await queries.trending(clickhouse, window, 50) == oracle_trending(
            data.distinct(), window, 50
        )


async def test_trending_ties_order_by_post_id(clickhouse: ClickHouse) -> None:
    """Equal rank keys (50 views == 1 share) come out by post_id ascending."""
    window = window_at(NOW, 60)
    events = [Event(f"v{i}", 30, 1, "view", NOW) for i in range(50)]
    events += [Event("s", 10, 1, "share", NOW), Event("l", 20, 1, "like", NOW),
               Event("c", 20, 1, "comment", NOW)]
    await queries.insert_events(clickhouse, events + events[:5])
    got = await queries.trending(clickhouse, window, 10)
    assert [(p.post_id, p.rank) for p in got] == [(10, 50), (20, 50), (30, 50)]


async def test_trending_empty_and_unknown_types(clickhouse: ClickHouse) -> None:
    """No events in the window -> []; rows with an unknown event_type are ignored."""
    window = window_at(NOW, 60)
    assert await queries.trending(clickhouse, window, 50) == []
    await queries.insert_events(clickhouse, [Event("x", 1, 1, "click", NOW)])
    await queries.insert_events(clickhouse, [Event("old", 2, 1, "like", window.start_ms - 1)])
    assert await queries.trending(clickhouse, window, 50) == []
    assert await queries.distinct_events(clickhouse, window) == 0


async def test_post_counts_and_distinct_events(clickhouse: ClickHouse) -> None:
    """post_counts of chosen posts and the distinct-event count match the recount."""
    rng = random.Random(4)
    window = window_at(NOW, 60)
    data = Dataset(with_repeats(rng, make_events(rng, 1200, 25, 10, 2 * 3_600_000)), [])
    await load(clickhouse, data)
    want = {p.post_id: p for p in oracle_trending(data.distinct(), window, 10_000)}
    chosen = [0, 1, 2, 3, 24, 999]
    got = await queries.post_counts(clickhouse, window, chosen)
    assert {p.post_id: p for p in got} == {p: want[p] for p in chosen if p in want}
    assert await queries.post_counts(clickhouse, window, []) == []
    inside = [e for e in data.distinct() if window.contains(e.ts_ms)]
    assert await queries.distinct_events(clickhouse, window) == len(inside)


# ---- active users and suggestions ----------------------------------------------------------


def oracle_active(events: list[Event], now_ms: int, days: int = 7) -> list[int]:
    """Users with an event in [now - days, now + 5 min] (the valid future tolerance)."""
    lo, hi = now_ms - days * DAY, now_ms + 5 * MINUTE_MS
    return sorted({e.user_id for e in events if lo <= e.ts_ms <= hi and e.event_type in TYPES})


def activity(rng: random.Random, users: int) -> list[Event]:
    """Users 0..users-1 active at various ages; some only older than 7 days or too far ahead."""
    out = []
    for u in range(users):
        age = rng.choice([DAY // 2, 3 * DAY, 6 * DAY, 8 * DAY, 30 * DAY - DAY, -6 * MINUTE_MS])
        for i in range(rng.randint(1, 3)):
            out.append(Event(f"u{u}-{i}", 1, u, rng.choice(TYPES), NOW - age - i))
    out.append(Event("edge-in", 1, 500, "view", NOW - 7 * DAY))
    out.append(Event("edge-out", 1, 501, "view", NOW - 7 * DAY - 1))
    out.append(Event("future-in", 1, 502, "view", NOW + 5 * MINUTE_MS))
    return out


async def test_active_users_equals_brute_force(clickhouse: ClickHouse) -> None:
    """Distinct users with an event in the last 7 days, ascending; repeats counted once."""
    rng = random.Random(5)
    events = activity(rng, 120)
    data = Dataset(with_repeats(rng, events), [])
    await load(clickhouse, data)
    got = await queries.active_users(clickhouse, NOW)
    assert got == oracle_active(events, NOW)
    assert 500 in got and 501 not in got and 502 in got
    assert await queries.active_users(clickhouse, NOW, days=40) == oracle_active(events, NOW, 40)


def random_graph(rng: random.Random, users: int, edges: int) -> list[tuple[int, int]]:
    """Random directed edges with a few hubs; self-follows included on purpose."""
    out = []
    for _ in range(edges):
        a = rng.randrange(users)
        b = rng.randrange(5) if rng.random() < 0.3 else rng.randrange(users)
        out.append((a, b))
    return out


@pytest.mark.parametrize(("seed", "per_user"), [(6, 3), (7, 20)])
async def test_suggestions_equal_brute_force(clickhouse: ClickHouse, seed: int, per_user: int) -> None:
    """The 2-hop query for batches of users equals the contract oracle for every user."""
    rng = random.Random(seed)
    edges = random_graph(rng, 70, 600)
    await load(clickhouse, Dataset([], edges))
    users = list(range(75))
    got: dict[int, list[Suggestion]] = {}
    for start in range(0, len(users), 16):
        got.update(await queries.suggestions(clickhouse, users[start : start + 16], per_user))
    assert sorted(got) == users
    for u in users:
        same(got[u], suggest_oracle(u, edges, per_user))


async def test_suggestions_many_equal_scores_at_the_cut(clickhouse: ClickHouse) -> None:
    """40 candidates with the same 3-term score: the cut keeps the lowest user ids."""
    u, f1, f2, f3 = 1000, 1001, 1002, 1003
    cands = list(range(2000, 2040))
    edges = [(u, f1), (u, f2), (u, f3)]
    for f, extra in ((f1, 0), (f2, 3), (f3, 7)):
        edges += [(f, c) for c in reversed(cands)]
        edges += [(f, 3000 + f * 10 + i) for i in range(extra)]
    await load(clickhouse, Dataset([], edges))
    got = (await queries.suggestions(clickhouse, [u], 3))[u]
    same(got, suggest_oracle(u, edges, 3))
    assert [s.user_id for s in got] == [2000, 2001, 2002]


async def test_suggestions_empty_inputs(clickhouse: ClickHouse) -> None:
    """No users -> {}; users without follows -> []."""
    assert await queries.suggestions(clickhouse, [], 5) == {}
    assert await queries.suggestions(clickhouse, [1, 2], 5) == {1: [], 2: []}


# ---- client behaviour ----------------------------------------------------------------------


async def test_schema_is_idempotent_and_has_the_contract_columns(clickhouse: ClickHouse) -> None:
    """Running the DDL again is harmless; columns and types are the contract's."""
    await create_schema(clickhouse)
    await create_schema(clickhouse)
    assert len(ddl("nova")) == 6  # database, three tables, two ALTERs adding position columns
    rows = await clickhouse.rows(
        "SELECT table, name, type FROM system.columns WHERE database = {db:String} ORDER BY table, position",
        {"db": clickhouse.database},
    )
    assert [(t, n, ty) for t, n, ty in rows] == [
        ("blocks", "blocker_id", "UInt64"),
        ("blocks", "blocked_id", "UInt64"),
        ("blocks", "created_at", "DateTime64(3, 'UTC')"),
        ("blocks", "deleted", "UInt8"),
        ("blocks", "version", "UInt64"),
        ("follows", "follower_id", "UInt64"),
        ("follows", "followee_id", "UInt64"),
        ("follows", "created_at", "DateTime64(3, 'UTC')"),
        ("follows", "deleted", "UInt8"),
        ("follows", "version", "UInt64"),
        ("post_events", "event_id", "String"),
        ("post_events", "post_id", "UInt64"),
        ("post_events", "user_id", "UInt64"),
        ("post_events", "event_type", "LowCardinality(String)"),
        ("post_events", "event_time", "DateTime64(3, 'UTC')"),
        ("post_events", "kafka_partition", "Int32"),
        ("post_events", "kafka_offset", "Int64"),
    ]


async def test_schema_migrates_a_follows_table_of_the_first_schema(clickhouse: ClickHouse) -> None:
    """A follows table made by the first schema (no `deleted`, replacing without a version)
    keeps every row, gains the column, and then reads unfollows by the contract's rule."""
    db = clickhouse.database
    await clickhouse.command(f"DROP TABLE IF EXISTS {db}.follows")
    await clickhouse.command(
        f"CREATE TABLE {db}.follows (follower_id UInt64, followee_id UInt64, "
        f"created_at DateTime64(3, 'UTC')) ENGINE = ReplacingMergeTree ORDER BY (follower_id, followee_id)"
    )
    old = [(a, b, NOW - 1000 * (a + b)) for a in range(1, 30) for b in range(1, 6) if a != b]
    await clickhouse.insert("follows", [[a, b, queries.ms_to_datetime(t)] for a, b, t in old],
                            ("follower_id", "followee_id", "created_at"))
    await create_schema(clickhouse)
    await create_schema(clickhouse)  # the second run finds nothing to migrate
    rows = await clickhouse.rows(
        f"SELECT follower_id, followee_id, toUnixTimestamp64Milli(created_at), deleted FROM {db}.follows"
    )
    assert sorted(rows) == sorted((a, b, t, 0) for a, b, t in old)
    # The unfollow must win over the older follow whatever order the rows arrive in.
    await queries.insert_follows(clickhouse, [(1, 2, NOW)], deleted=True)
    await queries.insert_follows(clickhouse, [(1, 2, NOW - 5)])
    await clickhouse.command(f"OPTIMIZE TABLE {db}.follows FINAL")
    held = await clickhouse.rows(f"SELECT follower_id, followee_id FROM ({queries.current_follows(db)})")
    assert sorted(held) == sorted((a, b) for a, b, _ in old if (a, b) != (1, 2))


async def test_current_state_tie_goes_to_the_end_in_any_arrival_order(clickhouse: ClickHouse) -> None:
    """Per pair the latest row holds; at an equal created_at the deleted row wins, whether it
    arrives first or last. The query alone is checked, on a plain MergeTree that keeps every
    row (the project's table also resolves ties by its version when it merges)."""
    db = "ties_scratch"
    await clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    await clickhouse.command(f"CREATE DATABASE {db}")
    await clickhouse.command(
        f"CREATE TABLE {db}.follows (follower_id UInt64, followee_id UInt64, created_at "
        f"DateTime64(3, 'UTC'), deleted UInt8) ENGINE = MergeTree ORDER BY tuple()")
    scratch = ClickHouse(clickhouse.dsn, db, 30_000)
    pairs = [[(1, b, NOW, 0), (1, b, NOW, 1)] for b in range(2, 8)]
    for b, pair in enumerate(pairs):
        await queries.insert_edge_rows(scratch, "follows", pair if b % 2 else pair[::-1])
    await queries.insert_edge_rows(scratch, "follows", [(1, 20, NOW, 1), (1, 20, NOW + 1, 0)])
    await queries.insert_edge_rows(scratch, "follows", [(1, 21, NOW + 1, 1), (1, 21, NOW, 0)])
    held = await clickhouse.rows(f"SELECT follower_id, followee_id FROM ({queries.current_follows(db)})")
    assert held == [(1, 20)]
    await clickhouse.command(f"DROP DATABASE {db}")


async def test_both_reads_of_the_follows_table_apply_the_tie_rule(clickhouse: ClickHouse) -> None:
    """The table's own reads (argMax for a block of users, FINAL for the whole table) agree
    with the rule for ties in either arrival order, rows in separate parts, before a merge."""
    db = clickhouse.database
    await clickhouse.command(f"SYSTEM STOP MERGES {db}.follows")
    try:
        for b in range(2, 10):
            pair = [(1, b, NOW, 0), (1, b, NOW, 1)]
            for row in pair if b % 2 else pair[::-1]:
                await queries.insert_edge_rows(clickhouse, "follows", [row])
        await queries.insert_edge_rows(clickhouse, "follows", [(1, 20, NOW + 1, 0)])
        await queries.insert_edge_rows(clickhouse, "follows", [(1, 20, NOW, 1)])
        for sql in (queries.all_current_follows(db),
                    queries.current_follows(db, "WHERE follower_id IN {users:Array(UInt64)}")):
            rows = await clickhouse.rows(f"SELECT follower_id, followee_id FROM ({sql})", {"users": [1]})
            assert rows == [(1, 20)], sql
    finally:
        await clickhouse.command(f"SYSTEM START MERGES {db}.follows")


async def test_event_time_is_stored_to_the_millisecond(clickhouse: ClickHouse) -> None:
    """Big ids and millisecond timestamps survive the insert exactly."""
    ev = Event("exact", 2**63 - 1, 2**63 - 2, "comment", NOW + 999)
    await queries.insert_events(clickhouse, [ev])
    rows = await clickhouse.rows(
        f"SELECT post_id, user_id, toUnixTimestamp64Milli(event_time) FROM {clickhouse.database}.post_events"
    )
    assert rows == [(2**63 - 1, 2**63 - 2, NOW + 999)]


async def test_timeout_is_enforced(clickhouse: ClickHouse) -> None:
    """JOB_CH_TIMEOUT_MS bounds a query: a scan of minutes fails as ClickHouseError."""
    slow = ClickHouse(clickhouse.dsn, clickhouse.database, timeout_ms=1000)
    # The query would run for many minutes; the test's own timeout catches a bound not applied.
    with pytest.raises(ClickHouseError) as info:
        await slow.rows("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0")
    assert "TIMEOUT" in str(info.value).upper() or "timed out" in str(info.value)
    assert await slow.rows("SELECT 1") == [(1,)]


async def test_timeout_has_millisecond_precision(clickhouse: ClickHouse) -> None:
    """JOB_CH_TIMEOUT_MS=300 is a 300 ms server-side limit, not a rounded second."""
    slow = ClickHouse(clickhouse.dsn, clickhouse.database, timeout_ms=300)
    with pytest.raises(ClickHouseError) as info:
        await slow.rows("SELECT count() FROM numbers(100000000000) WHERE sipHash64(number) = 0")
    assert "maximum: 300.000 ms" in str(info.value)


async def test_unreachable_server_is_a_clickhouse_error() -> None:
    """An HTTP DSN with nothing listening fails fast with ClickHouseError, password masked."""
    from streamer.demo.services import free_port

    ch = ClickHouse(f"http://default:hidden@127.0.0.1:{free_port()}", "nova", 2000)
    with pytest.raises(ClickHouseError) as info:
        await ch.rows("SELECT 1")
    assert "hidden" not in str(info.value)
    ch.close()


async def test_bad_sql_is_a_clickhouse_error(clickhouse: ClickHouse) -> None:
    """A rejected query surfaces as ClickHouseError and the client keeps working."""
    with pytest.raises(ClickHouseError):
        await clickhouse.rows("SELECT * FROM nova.no_such_table")
    assert await clickhouse.rows("SELECT 2") == [(2,)]


async def test_one_batch_spanning_many_days_inserts(clickhouse: ClickHouse) -> None:
    """Late/replayed events from 150 different days in one batch do not fail the insert."""
    events = [Event(f"d{i}", 7, i, "like", NOW - i * DAY) for i in range(150)]
    await queries.insert_events(clickhouse, events)
    assert await queries.active_users(clickhouse, NOW) == list(range(8))
    assert await queries.trending(clickhouse, window_at(NOW, 60), 5) == [PostCounts(7, likes=1)]
