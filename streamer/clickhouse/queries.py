"""Batch queries shared by ClickHouse-only mode and reconciliation; each event_id counts once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from streamer.clickhouse.client import ClickHouse
from streamer.core.events import EVENT_TYPES, Event
from streamer.core.people import EVENTS, Counting
from streamer.core.scoring import PostCounts
from streamer.core.sink_rows import TYPE_NAMES, SinkRows
from streamer.core.suggest import Suggestion, rank_sorted
from streamer.core.window import Window

EVENT_COLUMNS = ("event_id", "post_id", "user_id", "event_type", "event_time")
POSITION_COLUMNS = ("kafka_partition", "kafka_offset")
FUTURE_TOLERANCE_MS = 5 * 60 * 1000
_TYPES_SQL = ", ".join(f"'{t}'" for t in EVENT_TYPES)

_DEDUPED_IN_WINDOW = """
    SELECT event_id, any(post_id) AS pid, any(event_type) AS etype{users}
    FROM {db}.post_events
    WHERE event_time >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
      AND event_time < fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')
      AND event_type IN ({types})
      {cutoff}
    GROUP BY event_id
"""
# Rows written by the stream's sink carry their Kafka position. Given each partition's next
# offset as seen by the stream (-1: no cut-off), only rows the stream had read count.
_CUTOFF = """AND (kafka_partition < 0 OR kafka_partition >= length({offsets:Array(Int64)})
           OR {offsets:Array(Int64)}[kafka_partition + 1] < 0
           OR kafka_offset < {offsets:Array(Int64)}[kafka_partition + 1])"""


def _deduped(ch: ClickHouse, offsets: Sequence[int] | None, users: bool = False) -> str:
    return _DEDUPED_IN_WINDOW.format(
        db=ch.database, types=_TYPES_SQL, cutoff=_CUTOFF if offsets is not None else "",
        users=", any(user_id) AS uid" if users else "",
    )


def _params(window: Window, offsets: Sequence[int] | None,
            counting: Counting = EVENTS) -> dict[str, object]:
    params: dict[str, object] = {"start_ms": window.start_ms, "end_ms": window.end_ms}
    if offsets is not None:
        params["offsets"] = list(offsets)
    if counting.min_people > 1:
        params["min_people"] = counting.min_people
    return params

_COUNTS = """
    SELECT pid AS post_id,
           countIf(etype = 'view') AS views, countIf(etype = 'like') AS likes,
           countIf(etype = 'comment') AS comments, countIf(etype = 'share') AS shares
    FROM ({deduped}) {where}
    GROUP BY pid
"""
# Counting people: per post and type the distinct accounts among the deduplicated events.
_PEOPLE = """
    SELECT pid AS post_id,
           uniqExactIf(uid, etype = 'view') AS views, uniqExactIf(uid, etype = 'like') AS likes,
           uniqExactIf(uid, etype = 'comment') AS comments,
           uniqExactIf(uid, etype = 'share') AS shares
    FROM ({deduped}) {where}
    GROUP BY pid
"""
_MIN_PEOPLE = " HAVING uniqExact(uid) >= {min_people:UInt64}"


def _counts(ch: ClickHouse, offsets: Sequence[int] | None, counting: Counting, where: str,
            listed: bool) -> str:
    """Per-post counters by the counting mode; `listed`: only posts with the minimum of accounts."""
    deduped = _deduped(ch, offsets, counting.tracks_people)
    sql = (_PEOPLE if counting.people else _COUNTS).format(deduped=deduped, where=where)
    return sql + _MIN_PEOPLE if listed and counting.min_people > 1 else sql


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms_to_datetime(ts_ms: int) -> datetime:
    """Exact epoch-ms to aware datetime (no float rounding)."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


async def trending(
    ch: ClickHouse, window: Window, k: int, offsets: Sequence[int] | None = None,
    counting: Counting = EVENTS,
) -> list[PostCounts]:
    """Exact top-k posts over the window, ranked as the contract says (by the counting mode)."""
    sql = (
        _counts(ch, offsets, counting, "", listed=True)
        + " ORDER BY views + 20 * likes + 30 * comments + 50 * shares DESC, post_id ASC"
        + " LIMIT {k:UInt32}"
    )
    rows = await ch.rows(sql, {**_params(window, offsets, counting), "k": k})
    return [PostCounts(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


async def post_counts(
    ch: ClickHouse, window: Window, post_ids: Sequence[int], offsets: Sequence[int] | None = None,
    counting: Counting = EVENTS,
) -> list[PostCounts]:
    """Window counters of the given posts (for reconciliation), by the counting mode."""
    if not post_ids:
        return []
    sql = _counts(ch, offsets, counting, "WHERE pid IN {posts:Array(UInt64)}", listed=False)
    rows = await ch.rows(sql, {**_params(window, offsets), "posts": list(post_ids)})
    return [PostCounts(int(r[0]), int(r[1]), int(r[2]), int(r[3]), int(r[4])) for r in rows]


async def distinct_events(
    ch: ClickHouse, window: Window, offsets: Sequence[int] | None = None
) -> int:
    """Number of distinct valid event ids in the window."""
    rows = await ch.rows(f"SELECT count() FROM ({_deduped(ch, offsets)})", _params(window, offsets))
    return int(rows[0][0])


async def active_users(ch: ClickHouse, now_ms: int, days: int = 7) -> list[int]:
    """Users with any event in [now - days, now + 5 min] (event time), ascending."""
    return sorted(await active_users_by_activity(ch, now_ms, days))


# Follows and blocks hold one row per state change: per pair, the row with the greatest
# (created_at, deleted) is the current state (a tie goes to deleted = 1). A block of users reads
# it with argMax (no dependence on merges); a whole-table read uses FINAL, which the table's
# version (created_at ms x 2 + deleted) makes the same rule and which measured ~4x cheaper on
# chDB for whole tables, ~1.5x dearer for a block (benchmarks/RESULTS.md, "Follows that end").
_CURRENT = """SELECT {a} AS {x}, {b} AS {y} FROM {db}.{table} {where}
    GROUP BY {a}, {b} HAVING argMax(deleted, (created_at, deleted)) = 0"""
_CURRENT_ALL = "SELECT {a} AS {x}, {b} AS {y} FROM {db}.{table} FINAL WHERE deleted = 0"


def current_follows(db: str, where: str = "", x: str = "follower_id", y: str = "followee_id") -> str:
    """Follows that hold now, as (x = follower, y = followee); `where` limits the rows read."""
    return _CURRENT.format(a="follower_id", b="followee_id", x=x, y=y, db=db, table="follows",
                           where=where)


def all_current_follows(db: str) -> str:
    """Every follow that holds now, as (follower_id, followee_id): one pass over the table."""
    return _CURRENT_ALL.format(a="follower_id", b="followee_id", x="follower_id",
                               y="followee_id", db=db, table="follows")


def current_blocks_either_way(db: str, who: str = "") -> str:
    """Blocks that hold now, both directions, as (u, other); `who`: an IN clause limiting u
    (without it, the whole table)."""
    def one(a: str, b: str) -> str:
        if not who:
            return _CURRENT_ALL.format(a=a, b=b, x="u", y="other", db=db, table="blocks")
        return _CURRENT.format(a=a, b=b, x="u", y="other", db=db, table="blocks",
                               where=f"WHERE {a} {who}")

    return (f"SELECT u, other FROM ({one('blocker_id', 'blocked_id')}) "
            f"UNION ALL SELECT u, other FROM ({one('blocked_id', 'blocker_id')})")


_USERS = "IN {users:Array(UInt64)}"
# One query per block of users. s: every intermediary f that someone in the block follows
# now, with its current F(f) as an array and the Adamic-Adar weight over |F(f)|; the optional
# cap drops intermediaries whose out-degree exceeds it (0 = off, exact). Candidates that u
# follows, and accounts in a block with u (either way), are never kept.
_SUGGEST = """
    SELECT u, groupArray((c, mutual, score)) FROM (
      SELECT u, c, count() AS mutual, sum(w) AS score
      FROM (
        SELECT d.u AS u, arrayJoin(s.cs) AS c, s.w AS w
        FROM ({mine}) AS d
        INNER JOIN (
          SELECT f, groupArray(c) AS cs, 1 / log(2 + length(cs)) AS w
          FROM ({second})
          GROUP BY f
          HAVING {{cap:UInt64}} = 0 OR length(cs) <= {{cap:UInt64}}) AS s ON s.f = d.f)
      WHERE c != u AND (u, c) NOT IN ({mine})
        AND (u, c) NOT IN (SELECT u, other FROM ({blocked}))
      GROUP BY u, c
      ORDER BY u, score DESC, mutual DESC, c ASC
      LIMIT {{limit:UInt32}} BY u)
    GROUP BY u
"""


def _suggest_sql(db: str) -> str:
    mine = current_follows(db, f"WHERE follower_id {_USERS}", "u", "f")
    # Superset of the intermediaries (every f ever followed); the join keeps the current ones.
    second = current_follows(
        db, f"WHERE follower_id IN (SELECT followee_id FROM {db}.follows WHERE follower_id {_USERS})",
        "f", "c")
    return _SUGGEST.format(mine=mine, second=second, blocked=current_blocks_either_way(db, _USERS))


# Ids bound into one query: parameters travel in the HTTP request line of a server.
_IDS_PER_QUERY = 5000
# Extra rows per user so the 1e-9 tie rule can reorder near-equal scores at the cut.
_TIE_MARGIN = 10


async def suggestions(
    ch: ClickHouse, users: Sequence[int], per_user: int, degree_cap: int = 0
) -> dict[int, list[Suggestion]]:
    """Adamic-Adar suggestions for a block of users: one 2-hop query, ranked per user."""
    out: dict[int, list[Suggestion]] = {u: [] for u in users}
    if not users:
        return out
    rows = await ch.rows(
        _suggest_sql(ch.database),
        {"users": list(users), "limit": per_user + _TIE_MARGIN, "cap": degree_cap},
    )
    for u, items in rows:
        out[u] = rank_sorted(items, per_user)
    return out


async def active_users_by_activity(ch: ClickHouse, now_ms: int, days: int = 7) -> list[int]:
    """Users with any event in [now - days, now + 5 min] (event time), most events first, then
    user_id: who to refresh first."""
    sql = f"""
        SELECT user_id FROM {ch.database}.post_events
        WHERE event_time >= fromUnixTimestamp64Milli({{start_ms:Int64}}, 'UTC')
          AND event_time <= fromUnixTimestamp64Milli({{end_ms:Int64}}, 'UTC')
          AND event_type IN ({_TYPES_SQL})
        GROUP BY user_id
        ORDER BY count() DESC, user_id
    """
    start_ms = now_ms - days * 86_400_000
    rows = await ch.rows(sql, {"start_ms": start_ms, "end_ms": now_ms + FUTURE_TOLERANCE_MS})
    return [int(r[0]) for r in rows]


async def follow_fingerprints(ch: ClickHouse) -> dict[int, int]:
    """follower -> 64-bit hash of its sorted current followees: what changed since a run."""
    rows = await ch.rows(
        f"SELECT follower_id, sipHash64(arraySort(groupArray(followee_id))) "
        f"FROM ({all_current_follows(ch.database)}) GROUP BY follower_id"
    )
    return {int(a): int(h) for a, h in rows}


async def block_fingerprints(ch: ClickHouse) -> dict[int, int]:
    """account -> 64-bit hash of the sorted accounts in a current block with it (either way)."""
    rows = await ch.rows(
        f"SELECT u, sipHash64(arraySort(groupUniqArray(other))) "
        f"FROM ({current_blocks_either_way(ch.database)}) GROUP BY u"
    )
    return {int(a): int(h) for a, h in rows}


async def popular_accounts(ch: ClickHouse, limit: int) -> list[int]:
    """The `limit` accounts with the most current followers (ties: user_id ascending)."""
    rows = await ch.rows(
        f"SELECT followee_id FROM ({all_current_follows(ch.database)}) GROUP BY followee_id "
        f"ORDER BY count() DESC, followee_id ASC LIMIT {{limit:UInt64}}",
        {"limit": limit},
    )
    return [int(r[0]) for r in rows]


async def excluded_accounts(ch: ClickHouse, users: Sequence[int]) -> dict[int, set[int]]:
    """user -> accounts it follows now or is in a current block with (either way)."""
    out: dict[int, set[int]] = {u: set() for u in users}
    if not users:
        return out
    mine = current_follows(ch.database, f"WHERE follower_id {_USERS}", "u", "other")
    blocked = current_blocks_either_way(ch.database, _USERS)
    rows = await ch.rows(
        f"SELECT u, groupUniqArray(other) FROM (SELECT u, other FROM ({mine}) "
        f"UNION ALL SELECT u, other FROM ({blocked})) GROUP BY u",
        {"users": list(users)},
    )
    for u, others in rows:
        out[int(u)] = {int(o) for o in others}
    return out


async def followers_of(ch: ClickHouse, accounts: Sequence[int]) -> set[int]:
    """Everyone who follows one of `accounts` (their weights or candidates may have changed)."""
    out: set[int] = set()
    for start in range(0, len(accounts), _IDS_PER_QUERY):
        rows = await ch.rows(
            f"SELECT DISTINCT follower_id FROM {ch.database}.follows "
            f"WHERE followee_id IN {{accounts:Array(UInt64)}}",
            {"accounts": list(accounts[start : start + _IDS_PER_QUERY])},
        )
        out.update(int(r[0]) for r in rows)
    return out


def event_rows(events: Sequence[Event]) -> list[list[object]]:
    """Rows for an insert into post_events (event_time as epoch ms in UTC)."""
    return [[e.event_id, e.post_id, e.user_id, e.event_type, ms_to_datetime(e.ts_ms)] for e in events]


async def insert_events(
    ch: ClickHouse, events: Sequence[Event], positions: Sequence[tuple[int, int]] | None = None
) -> None:
    """Write accepted events to post_events, with their Kafka (partition, offset) when known."""
    if positions is None:
        await ch.insert("post_events", event_rows(events), EVENT_COLUMNS)
        return
    rows = [[*row, p, o] for row, (p, o) in zip(event_rows(events), positions, strict=True)]
    await ch.insert("post_events", rows, EVENT_COLUMNS + POSITION_COLUMNS)


async def insert_rows(ch: ClickHouse, rows: SinkRows) -> None:
    """Write the sink's rows as columns (DateTime64(3) takes epoch-ms integers as they are)."""
    columns = [
        rows.event_ids, rows.post_ids.astype(np.uint64), rows.user_ids.astype(np.uint64),
        TYPE_NAMES[rows.types].tolist(), rows.ts_ms.tolist(), rows.partitions, rows.offsets,
    ]
    await ch.insert_columns("post_events", columns, EVENT_COLUMNS + POSITION_COLUMNS)


async def insert_follows(
    ch: ClickHouse, edges: Sequence[tuple[int, int, int]], deleted: bool = False
) -> None:
    """Append follow rows (follower, followee, created_at_ms); deleted=True: unfollows."""
    rows = [[a, b, ms_to_datetime(ts), int(deleted)] for a, b, ts in edges]
    await ch.insert("follows", rows, ("follower_id", "followee_id", "created_at", "deleted"))


async def insert_edge_rows(ch: ClickHouse, table: str, rows: Sequence[tuple[int, int, int, int]]) -> None:
    """Append (a, b, created_at_ms, deleted) rows to `follows` or `blocks`."""
    columns = {"follows": ("follower_id", "followee_id"), "blocks": ("blocker_id", "blocked_id")}
    data = [[a, b, ms_to_datetime(ts), d] for a, b, ts, d in rows]
    await ch.insert(table, data, (*columns[table], "created_at", "deleted"))
