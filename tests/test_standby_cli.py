"""`streamer jobs` as a process: the standby publishes, reports its role on /readyz, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from streamer.clock import wall_ms
from streamer.core.payloads import trending_key, trending_lock_key, trending_meta_key
from streamer.settings.model import Settings
from tests.ports import start_listening
from tests.test_standby import stream_publish
from tests.waiting import await_until


def start_jobs(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Create the schema in the child's embedded ClickHouse, then start `streamer jobs` and wait
    until it listens: (child, web port), another port if its first one was taken meanwhile."""
    cmd = [sys.executable, "-m", "streamer"]
    subprocess.run([*cmd, "schema"], env=env, check=True, capture_output=True, timeout=120)

    def spawn(port: int) -> subprocess.Popen[bytes]:
        with log_path.open("wb") as log:
            return subprocess.Popen([*cmd, "jobs", "--job", "trending"],
                                    env={**env, "STREAMER_WEB_PORT": str(port)},
                                    stdout=subprocess.DEVNULL, stderr=log)

    return start_listening(spawn, log_path)


def readyz(port: int) -> dict[str, Any]:
    """GET /readyz as JSON."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
        body: dict[str, Any] = json.loads(resp.read())
    return body


async def test_jobs_mode_runs_the_standby(
    subprocess_env: dict[str, str], redis_client: Redis, settings: Settings, tmp_path: Path
) -> None:
    """No stream meta: it publishes `[]` as standby; a fresh stream meta makes it idle; exit 0."""
    env = {**subprocess_env, "JOB_TRENDING_INTERVAL_SEC": "2"}
    log_path = tmp_path / "jobs.log"
    proc, port = await asyncio.to_thread(start_jobs, env, log_path)
    try:

        async def standby_published() -> bool:
            raw = await redis_client.get(trending_meta_key(1))
            return raw is not None and json.loads(raw).get("source") == "standby"

        await await_until(standby_published, 30, "a standby publish")
        assert await redis_client.get(trending_key(1)) == b"[]"
        assert "standby publishing" in (await asyncio.to_thread(readyz, port))["detail"]
        fresh = settings.model_copy(update={"job_trending_interval_sec": 2})
        await stream_publish(redis_client, fresh, wall_ms())

        async def idle() -> bool:
            return "standby idle" in (await asyncio.to_thread(readyz, port))["detail"]

        await await_until(idle, 10, "the standby idle")
        assert json.loads(await redis_client.get(trending_meta_key(1)) or b"{}")["mode"] == "stream"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
        assert await redis_client.get(trending_lock_key(1, "standby")) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        print(log_path.read_text()[-5000:])  # shown by pytest only when the test fails
