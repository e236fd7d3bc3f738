"""Suggestions at scale, with the commands an operator runs: full-run cost per active user over
graph sizes, an incremental run after 1 % of users followed new accounts (vs a full run on the
same data), and two `streamer jobs` replicas sharing a full run (vs one).

Usage: `.venv/bin/python -m benchmarks.suggestions_scale --work DIR [--users N ...] [--replicas-at N]`
Each size gets `streamer sample --events 5N --users N --posts 50000 --avg-follows 20` in its own
STREAMER_DATA_DIR; one private redis-server serves all. A replica is a process with its own
embedded ClickHouse (a copy of the same data), as replicas reading ClickHouse replicas would be.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import redis

from streamer.core.payloads import suggestions_state_key
from streamer.demo.services import start_redis

STREAMER = [sys.executable, "-m", "streamer"]
_INSERT = """
import asyncio, random, sys
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse import queries
from streamer.clock import wall_ms
async def main(share):
    ch = ClickHouse("chdb://" + sys.argv[1], "nova", 600000)
    users = await queries.active_users(ch, wall_ms())
    rng = random.Random(5)
    chosen = rng.sample(users, max(1, int(len(users) * share)))
    top = max(users)
    await queries.insert_follows(ch, [(u, rng.randint(1, top), wall_ms()) for u in chosen])
    print(len(chosen))
asyncio.run(main(float(sys.argv[2])))
"""


def env_for(data_dir: Path, redis_url: str) -> dict[str, str]:
    """Environment of one replica: its own data dir (embedded ClickHouse), the shared Redis."""
    env = dict(os.environ)
    env.update({"STREAMER_DATA_DIR": str(data_dir), "REDIS_URL": redis_url, "LOG_LEVEL": "INFO",
                "CLICKHOUSE_URL": "", "JOB_CH_TIMEOUT_MS": "60000"})
    return env


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Run a command to completion; (wall seconds, its output)."""
    began = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - began, out.stdout + out.stderr


def suggestions_once(env: dict[str, str], full: bool) -> tuple[float, str]:
    """`streamer jobs --once [--full] --job suggestions`."""
    return timed([*STREAMER, "jobs", "--once", *(["--full"] if full else []), "--job",
                  "suggestions"], env)


def summary_of(output: str) -> str:
    """The job's one-line summary from its log."""
    lines = [ln for ln in output.splitlines() if "job suggestions ok:" in ln]
    return lines[-1].split("job suggestions ok: ", 1)[1] if lines else output.strip()[-300:]


def active_in(summary: str) -> int:
    """Active users named in a summary: `run 3 (full, 169601 active users): ...`."""
    return int(summary.split(", ", 1)[1].split(" active", 1)[0])


def two_replicas(a: dict[str, str], b: dict[str, str], r: redis.Redis) -> tuple[float, str, str]:
    """Replica A plans a full run; B joins as soon as the plan is in Redis. Wall of both."""
    key = suggestions_state_key("nova-streamer")
    before = int(r.hget(key, "run_no") or 0)
    began = time.perf_counter()
    cmd = [*STREAMER, "jobs", "--once", "--job", "suggestions"]
    proc_a = subprocess.Popen([*cmd, "--full"], env=a, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    while int(r.hget(key, "run_no") or 0) == before and proc_a.poll() is None:
        time.sleep(0.05)
    proc_b = subprocess.Popen(cmd, env=b, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    out_a, _ = proc_a.communicate()
    out_b, _ = proc_b.communicate()
    return time.perf_counter() - began, summary_of(out_a), summary_of(out_b)


def measure(users: int, work: Path, redis_url: str, replicas: bool) -> dict[str, object]:
    """Sample data of one size, then the full, incremental and replica runs on it."""
    data = work / f"u{users}"
    env = env_for(data, redis_url)
    if not (data / "clickhouse").exists():
        timed([*STREAMER, "sample", "--events", str(5 * users), "--users", str(users),
               "--posts", "50000", "--avg-follows", "20"], env)
    redis.Redis.from_url(redis_url).flushall()
    full_s, out = suggestions_once(env, full=True)
    summary = summary_of(out)
    row: dict[str, object] = {"users": users, "active": active_in(summary), "full_s": full_s,
                              "full_summary": summary}
    if not replicas:
        return row
    steady_s, out = suggestions_once(env, full=False)
    row.update(steady_s=steady_s, steady_summary=summary_of(out))
    copy = work / f"u{users}-replica-b"  # the same sample (seeded graph), generated again
    if not (copy / "clickhouse").exists():
        timed([*STREAMER, "sample", "--events", str(5 * users), "--users", str(users),
               "--posts", "50000", "--avg-follows", "20"], env_for(copy, redis_url))
    one_s, _ = suggestions_once(env, full=True)
    pair_s, sa, sb = two_replicas(env, env_for(copy, redis_url), redis.Redis.from_url(redis_url))
    row.update(one_replica_s=one_s, two_replicas_s=pair_s, replica_a=sa, replica_b=sb)
    changed = subprocess.run([sys.executable, "-c", _INSERT, str(data / "clickhouse"), "0.01"],
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
    incr_s, out = suggestions_once(env, full=False)
    full2_s, _ = suggestions_once(env, full=True)
    row.update(changed_users=int(changed), incr_s=incr_s, incr_summary=summary_of(out),
               full_again_s=full2_s)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run the sizes, print one JSON line per size (also appended to WORK/results.jsonl)."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--users", type=int, action="append")
    p.add_argument("--replicas-at", type=int, default=200_000)
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the private Redis too
    svc = start_redis(workdir=args.work)
    url = f"redis://127.0.0.1:{svc.port}/0"
    try:
        for users in args.users or [25_000, 100_000, 200_000]:
            row = measure(users, args.work, url, users == args.replicas_at)
            line = orjson.dumps(row).decode()
            print(line, flush=True)
            with (args.work / "results.jsonl").open("a") as fh:
                fh.write(line + "\n")
    finally:
        svc.stop()
    return 0


if __name__ == "__main__":
    random.seed(0)
    raise SystemExit(main())
