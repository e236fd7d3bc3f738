"""Scenario 7: two `streamer jobs` replicas; the first is paused inside its write past its lock.

The JobRunner's lock TTL is fixed (30 s, `JobRunner(lock_ttl_ms=30_000)`; no CLI flag or env
variable), so the replicas run through `python -m tests.reliability_helpers jobs-lock-ttl 1500 --
jobs ...`, which only changes that default. ClickHouse is `FakeClickHouse` (no server here; both
replicas must read the same data over HTTP). Replica A talks to Redis through `RedisProxy`, which
holds A's MULTI/EXEC after A checked the lock (WATCH + GET); A is then SIGSTOPped so its
keep-alive cannot renew; the lock expires, replica B takes it and writes; A is released and
SIGCONTed. Redis must abort A's EXEC (the WATCH on the lock key) and A must give up.
The child's Redis socket timeout is raised far above the pause (`JOBS_SOCKET_TIMEOUT_S`), so A
sees Redis's answer however long B takes to start and publish: no duration is assumed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis as sync_redis

from streamer.clickhouse.schema import ddl
from streamer.core.payloads import decode_trending, trending_key, trending_lock_key, trending_meta_key
from streamer.core.window import Window
from streamer.demo.services import LocalService, free_port
from tests.ports import start_listening
from tests.reliability_helpers import FakeClickHouse, RedisProxy, record_figures, wait_until
from tests.stream_helpers import now_ms, oracle, random_events

pytestmark = pytest.mark.timeout(180)
LOCK_TTL_MS = 1500
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fake_ch(fake_ch: FakeClickHouse) -> FakeClickHouse:
    """The replicas' shared ClickHouse (tests/conftest.py), schema created."""
    for statement in ddl("nova"):
        fake_ch.sql(statement)
    return fake_ch


def insert_events(fake: FakeClickHouse, events: list[dict[str, Any]]) -> None:
    """Seed post_events directly."""
    rows = ",".join(f"('{e['event_id']}',{e['post_id']},{e['user_id']},'{e['event_type']}',"
                    f"fromUnixTimestamp64Milli({e['ts']}, 'UTC'))" for e in events)
    fake.sql("INSERT INTO nova.post_events (event_id, post_id, user_id, event_type, event_time) "
             f"VALUES {rows}")


def replica(tmp_path: Path, name: str, redis_url: str, fake: FakeClickHouse, *args: str,
            port: int | None = None) -> tuple[subprocess.Popen[bytes], Path]:
    """`streamer jobs --job trending --force <args>` with the short lock TTL."""
    env = {**os.environ, "REDIS_URL": redis_url, "CLICKHOUSE_URL": fake.url,
           "STREAMER_DATA_DIR": str(tmp_path / name), "JOB_TRENDING_INTERVAL_SEC": "1",
           "JOB_CH_TIMEOUT_MS": "20000", "STREAMER_WEB_PORT": str(port or free_port())}
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability_helpers", "jobs-lock-ttl", str(LOCK_TTL_MS), "--",
         "jobs", "--job", "trending", "--force", *args],
        env=env, cwd=str(ROOT), stdout=log.open("wb"), stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL)
    return proc, log


class TestFencedWrites:
    """A replica paused past its lock never overwrites the new holder."""

    def test_paused_holder_cannot_overwrite_new_holder(
        self, tmp_path: Path, fake_ch: FakeClickHouse, proxy: RedisProxy, redis_service: LocalService
    ) -> None:
        """A is frozen between its lock check and its EXEC, its lock expires, B takes the lock
        and publishes; released, A's EXEC is aborted by Redis (WATCH) and A fails its run."""
        client = sync_redis.Redis(port=redis_service.port)
        first = random_events(500, 40, now_ms(), seed=71)
        insert_events(fake_ch, first)
        proxy.hold_next_exec()
        a, a_log = replica(tmp_path, "a", proxy.url, fake_ch, "--once")
        b: subprocess.Popen[bytes] | None = None
        try:
            assert proxy.held.wait(60), a_log.read_text()
            os.kill(a.pid, signal.SIGSTOP)
            paused_at = time.monotonic()
            raw_token = client.get(trending_lock_key(1, "jobs"))
            a_token = raw_token.decode() if isinstance(raw_token, bytes) else str(raw_token)
            assert a_token.split(":")[1] == str(a.pid), "A holds the lock while paused"
            second = random_events(500, 40, now_ms(), seed=72)
            insert_events(fake_ch, second)  # B's view differs from what A computed
            b_log = tmp_path / "b.log"
            b = start_listening(lambda port: replica(
                tmp_path, "b", redis_service_url(redis_service), fake_ch, port=port)[0], b_log)[0]
            wait_until(lambda: client.exists(trending_meta_key(1)) == 1, 120, "B's publish")
            b_meta = orjson.loads(client.get(trending_meta_key(1)) or b"{}")
            pause_s = time.monotonic() - paused_at
            proxy.release()
            os.kill(a.pid, signal.SIGCONT)
            assert a.wait(30) == 1, "A's run must fail: its lock was lost"

            replies = b"".join(proxy.replies_after_release)
            assert exec_reply(replies) in ("_", "*-1"), f"EXEC not aborted by WATCH: {replies!r}"
            a_text = a_log.read_text()
            assert "LockLost" in a_text and "job trending ok" not in a_text, a_text
            value = decode_trending(client.get(trending_key(1)) or b"[]")
            window = Window(b_meta["window_start_ms"], b_meta["window_end_ms"])
            assert value == oracle(first + second, window, 50), "B's value stands"
            assert value != oracle(first, window, 50)
            assert "job trending ok" in b_log.read_text()
            record_figures("7_jobs_fencing", {
                "lock_ttl_ms": LOCK_TTL_MS, "holder_paused_s": round(pause_s, 2),
                "paused_exec_reply": exec_reply(replies) + " (null: transaction aborted by WATCH)",
                "paused_holder_exit_code": 1, "overwrites_by_paused_holder": 0,
                "lock_ttl_configurable_from_cli": False,
            })
            b.send_signal(signal.SIGTERM)
            assert b.wait(60) == 0
        finally:
            for proc in (a, b):
                if proc is not None and proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
                    proc.kill()
                    proc.wait(10)
            client.close()


def exec_reply(replies: bytes) -> str:
    """The reply to EXEC in `+OK (MULTI), +QUEUED..., <EXEC reply>` (RESP2 `*-1`/RESP3 `_` = aborted)."""
    lines = replies.decode(errors="replace").split("\r\n")
    assert lines[0] == "+OK", replies
    index = 1
    while lines[index] == "+QUEUED":
        index += 1
    return lines[index]


def redis_service_url(svc: LocalService) -> str:
    """Direct URL of the test Redis."""
    return f"redis://127.0.0.1:{svc.port}/0"
