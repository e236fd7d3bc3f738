"""The `streamer` command as a child process against the private Redis and its own chDB."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import orjson
import redis as sync_redis

from streamer.core.payloads import suggestions_key, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts
from streamer.demo.generate import events, graph_rows
from streamer.demo.services import free_port
from tests.ports import rerun_on_taken_port
from tests.test_jobs_suggestions_ends import recount
from tests.waiting import catches, wait_until

SAMPLE = {"events": 3000, "posts": 100, "users": 150, "avg_follows": 4}


def streamer(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run `python -m streamer ARGS` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args], env={**env, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=timeout,
    )


def load_sample(env: dict[str, str]) -> None:
    """`streamer sample` into the child's own embedded ClickHouse."""
    proc = streamer(
        env, "sample", "--events", str(SAMPLE["events"]), "--posts", str(SAMPLE["posts"]),
        "--users", str(SAMPLE["users"]), "--avg-follows", str(SAMPLE["avg_follows"]),
    )
    assert proc.returncode == 0, proc.stderr


def js(raw: Any) -> Any:
    """Parse a JSON value that must exist."""
    assert raw is not None
    return orjson.loads(raw)


def suggestion_users(client: sync_redis.Redis) -> set[int]:
    """User ids that have a suggestions key."""
    return {int(k.decode().rsplit(":", 1)[1]) for k in client.scan_iter("nova:cache:suggested_users:*")}


def test_jobs_once_publishes_trending_and_every_active_users_suggestions(
    subprocess_env: dict[str, str], redis_sync: sync_redis.Redis
) -> None:
    """`jobs --once` on the sample: exit 0, a ranked trending list, oracle suggestions."""
    load_sample(subprocess_env)
    proc = streamer(subprocess_env, "jobs", "--once")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    posts = [PostCounts.from_payload(o) for o in js(redis_sync.get(trending_key(1)))]
    assert 0 < len(posts) <= 50
    assert [p.key for p in posts] == sorted(p.key for p in posts)
    meta = js(redis_sync.get(trending_meta_key(1)))
    assert meta["mode"] == "clickhouse" and meta["window_end_ms"] - meta["window_start_ms"] == 3_600_000
    active = {e.user_id for e in events(SAMPLE["events"], SAMPLE["posts"], SAMPLE["users"], 0, 1)}
    assert suggestion_users(redis_sync) == active
    rows = list(graph_rows(SAMPLE["users"], SAMPLE["avg_follows"], 0))  # with ends and blocks
    assert {r[4] for r in rows} == {0, 1}
    for user in sorted(active):
        got = js(redis_sync.get(suggestions_key(user)))
        want = recount(user, rows, False, 20)
        assert [(o["user_id"], o["mutual_count"]) for o in got] == [(c, m) for c, _, m in want]
        assert all(abs(o["score"] - s) <= 1e-9 for o, (_, s, _) in zip(got, want, strict=True))
    top = streamer(subprocess_env, "top")
    assert top.returncode == 0, top.stderr
    assert "post_id" in top.stdout and str(posts[0].post_id) in top.stdout


def test_jobs_once_single_job(subprocess_env: dict[str, str], redis_sync: sync_redis.Redis) -> None:
    """`--job trending` touches only the trending keys (empty ClickHouse -> `[]`)."""
    assert streamer(subprocess_env, "schema").returncode == 0
    proc = streamer(subprocess_env, "jobs", "--once", "--job", "trending")
    assert proc.returncode == 0, proc.stderr
    assert redis_sync.get(trending_key(1)) == b"[]"
    assert suggestion_users(redis_sync) == set()
    proc = streamer(subprocess_env, "jobs", "--once", "--job", "suggestions")
    assert proc.returncode == 0, proc.stderr
    assert suggestion_users(redis_sync) == set()


def test_schema_is_idempotent(subprocess_env: dict[str, str]) -> None:
    """`streamer schema` twice: both exit 0."""
    for _ in range(2):
        proc = streamer(subprocess_env, "schema")
        assert proc.returncode == 0, proc.stderr


def test_top_without_a_value_exits_1(subprocess_env: dict[str, str]) -> None:
    """Nothing published yet: a message and exit 1, no traceback."""
    proc = streamer(subprocess_env, "top")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout


def test_top_with_redis_down_is_one_line_without_traceback(subprocess_env: dict[str, str]) -> None:
    """A Redis connection error is reported on one line (password masked), exit 1."""
    env = {**subprocess_env, "REDIS_URL": f"redis://app:pw123@127.0.0.1:{free_port()}/0"}
    proc = streamer(env, "top")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and "pw123" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("streamer: Redis redis://app:***@")


def test_jobs_once_fails_when_redis_is_down(subprocess_env: dict[str, str]) -> None:
    """REDIS_URL to a closed port: non-zero exit, a failure log line, no traceback."""
    env = {**subprocess_env, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    proc = streamer(env, "jobs", "--once")
    assert proc.returncode != 0
    assert "failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_jobs_once_fails_when_clickhouse_is_down(
    subprocess_env: dict[str, str], redis_sync: sync_redis.Redis
) -> None:
    """CLICKHOUSE_URL to a closed port: non-zero exit, previous Redis values untouched."""
    redis_sync.set(trending_key(1), b"[]")
    redis_sync.set(suggestions_key(1), b"[]")
    env = {**subprocess_env, "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",
           "JOB_CH_TIMEOUT_MS": "2000"}
    proc = streamer(env, "jobs", "--once")
    assert proc.returncode != 0
    assert "failed" in proc.stderr and "Traceback" not in proc.stderr
    assert redis_sync.get(trending_key(1)) == b"[]"
    assert redis_sync.get(suggestions_key(1)) == b"[]"
    assert redis_sync.pttl(trending_key(1)) == -1  # not rewritten


def sigterm_then_exit_code(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM a running child: (exit code, stderr); killed if it outlives the contract's 60 s."""
    try:
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


def test_jobs_mode_stops_cleanly_on_sigterm(subprocess_env: dict[str, str]) -> None:
    """`streamer jobs` keeps running until SIGTERM, then exits 0 (within 60 s)."""
    env = {**subprocess_env, "JOB_TRENDING_INTERVAL_SEC": "1"}
    assert streamer(env, "schema").returncode == 0

    def run(with_port: dict[str, str]) -> tuple[int, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "jobs"], env=with_port, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if "jobs mode running" in line:
                break
        code, err = sigterm_then_exit_code(proc)
        return code, "".join(seen) + err

    code, err = rerun_on_taken_port(run, env, lambda result: result[1])  # web port taken: again
    assert "jobs mode running" in err
    assert code == 0, err
    assert "Traceback" not in err


def test_sigterm_abandons_a_command_that_does_not_watch_for_it(subprocess_env: dict[str, str]) -> None:
    """A long `sample` load stops soon after SIGTERM with exit 0 (it used to run to the end)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "sample", "--events", "5000000", "--users", "1000"],
        env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: catches(proc.pid, signal.SIGTERM), 60, "the stop sequence installed")
    code, err = sigterm_then_exit_code(proc)  # the full load would take minutes
    assert code == 0, err
    assert "Traceback" not in err
