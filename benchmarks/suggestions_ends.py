"""Suggestions with follows that end: full run, then incremental runs after nothing changed,
after 1 % of active users follow a new account and after 0.5 % unfollow one, each compared with
a full run on the same data; and the two ways to read the current follow state (argMax over
(created_at, deleted) vs FINAL) timed on the same table.

Usage: `.venv/bin/python -m benchmarks.suggestions_ends --work DIR --users N`
The data is `streamer sample --events 5N --users N --posts 50000 --avg-follows 20` (with its
unfollows, re-follows and blocks) in DIR/uN; a private redis-server serves the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

from benchmarks.suggestions_scale import STREAMER, active_in, env_for, suggestions_once, summary_of, timed
from streamer.clickhouse.client import ClickHouse
from streamer.demo.services import start_redis

_CHANGE = """
import asyncio, random, sys
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse import queries
from streamer.clock import wall_ms
async def main(share, unfollow):
    ch = ClickHouse("chdb://" + sys.argv[1], "nova", 600000)
    rng = random.Random(5)
    users = await queries.active_users(ch, wall_ms())
    chosen = sorted(rng.sample(users, max(1, int(len(users) * share))))
    if unfollow:
        mine = queries.current_follows("nova", "WHERE follower_id IN {users:Array(UInt64)}", "u", "f")
        rows = await ch.rows("SELECT u, any(f) FROM (" + mine + ") GROUP BY u", {"users": chosen})
        await queries.insert_follows(ch, [(u, f, wall_ms()) for u, f in rows], deleted=True)
        print(len(rows))
    else:
        await queries.insert_follows(ch, [(u, rng.randint(1, max(users)), wall_ms()) for u in chosen])
        print(len(chosen))
asyncio.run(main(float(sys.argv[2]), sys.argv[3] == "1"))
"""
_ARGMAX = ("SELECT count() FROM (SELECT follower_id, followee_id FROM nova.follows GROUP BY "
           "follower_id, followee_id HAVING argMax(deleted, (created_at, deleted)) = 0)")
_FINAL = "SELECT count() FROM nova.follows FINAL WHERE deleted = 0"
_BLOCK = "WHERE follower_id IN (SELECT number * 97 FROM numbers(1000))"
_ARGMAX_BLOCK = ("SELECT count() FROM (SELECT follower_id, followee_id FROM nova.follows " + _BLOCK
                 + " GROUP BY follower_id, followee_id HAVING argMax(deleted, (created_at, deleted)) = 0)")
_FINAL_BLOCK = "SELECT count() FROM nova.follows FINAL " + _BLOCK + " AND deleted = 0"
_FP = ("SELECT count(), sum(h) FROM (SELECT follower_id, sipHash64(arraySort(groupArray(followee_id)))"
       " AS h FROM ({}) GROUP BY follower_id)")
_POP = ("SELECT count() FROM (SELECT followee_id FROM ({}) GROUP BY followee_id "
        "ORDER BY count() DESC, followee_id LIMIT 1000)")
_ARGMAX_PAIRS = ("SELECT follower_id, followee_id FROM nova.follows GROUP BY follower_id, "
                 "followee_id HAVING argMax(deleted, (created_at, deleted)) = 0")
_FINAL_PAIRS = "SELECT follower_id, followee_id FROM nova.follows FINAL WHERE deleted = 0"


def change(data: Path, env: dict[str, str], share: float, unfollow: bool) -> int:
    """Append new follows (or unfollows) of `share` of the active users; how many rows."""
    out = subprocess.run([sys.executable, "-c", _CHANGE, str(data / "clickhouse"), str(share),
                          "1" if unfollow else "0"], env=env, capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


def state_reads(data: Path, repeat: int = 3) -> dict[str, float]:
    """Best-of-`repeat` seconds of each way to read the current follows, whole table and a block."""
    async def best(ch: ClickHouse, sql: str) -> tuple[float, int]:
        times, count = [], 0
        for _ in range(repeat):
            began = time.perf_counter()
            count = int((await ch.rows(sql))[0][0])
            times.append(time.perf_counter() - began)
        return min(times), count

    async def run() -> dict[str, float]:
        ch = ClickHouse(f"chdb://{data / 'clickhouse'}", "nova", 600_000)
        out: dict[str, float] = {}
        for name, sql in (("argmax_all", _ARGMAX), ("final_all", _FINAL),
                          ("argmax_block", _ARGMAX_BLOCK), ("final_block", _FINAL_BLOCK),
                          ("argmax_fingerprints", _FP.format(_ARGMAX_PAIRS)),
                          ("final_fingerprints", _FP.format(_FINAL_PAIRS)),
                          ("argmax_popular", _POP.format(_ARGMAX_PAIRS)),
                          ("final_popular", _POP.format(_FINAL_PAIRS))):
            out[name + "_s"], out[name + "_rows"] = await best(ch, sql)
        ch.close()
        return out

    return asyncio.run(run())


def measure(users: int, work: Path, redis_url: str) -> dict[str, object]:
    """Sample, a full run, then the incremental runs, each beside a full run on the same data."""
    data = work / f"u{users}"
    env = env_for(data, redis_url)
    if not (data / "clickhouse").exists():
        timed([*STREAMER, "sample", "--events", str(5 * users), "--users", str(users),
               "--posts", "50000", "--avg-follows", "20"], env)
    redis.Redis.from_url(redis_url).flushall()
    full_s, out = suggestions_once(env, full=True)
    row: dict[str, object] = {"users": users, "active": active_in(summary_of(out)),
                              "full_s": round(full_s, 2)}
    steady_s, out = suggestions_once(env, full=False)
    row.update(steady_s=round(steady_s, 2), steady=summary_of(out))
    for name, share, unfollow in (("follow_1pct", 0.01, False), ("unfollow_half_pct", 0.005, True)):
        row[name + "_rows"] = change(data, env, share, unfollow)
        incr_s, out = suggestions_once(env, full=False)
        again_s, _ = suggestions_once(env, full=True)
        row.update({name + "_s": round(incr_s, 2), name: summary_of(out),
                    name + "_full_s": round(again_s, 2),
                    name + "_ratio": round(incr_s / again_s, 3)})
    row.update(state_reads(data))
    return row


def main(argv: list[str] | None = None) -> int:
    """One JSON line per size (also appended to WORK/ends.jsonl)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--users", type=int, action="append")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    svc = start_redis(workdir=args.work)
    try:
        for users in args.users or [50_000]:
            line = orjson.dumps(measure(users, args.work, f"redis://127.0.0.1:{svc.port}/0")).decode()
            print(line, flush=True)
            with (args.work / "ends.jsonl").open("a") as fh:
                fh.write(line + "\n")
    finally:
        svc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
