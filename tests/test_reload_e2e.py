"""Configuration reload in running processes: a worker, two workers, `streamer jobs`.

Real tansu broker, redis-server and embedded ClickHouse; the processes are children that read
STREAMER_CONFIG_FILE, replaced atomically the way a ConfigMap volume is updated."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.scoring import PostCounts
from streamer.core.window import Window
from streamer.demo.services import LocalService
from tests.ports import start_listening
from tests.stream_helpers import (
    Cluster,
    WorkerProcess,
    keyed,
    now_ms,
    oracle,
    produce,
    random_events,
    read_trending,
    settle_exact,
)

pytestmark = pytest.mark.timeout(300)
Publish = tuple[list[PostCounts], dict[str, Any]]


def write_config(path: Path, text: str) -> None:
    """Replace the file in one rename (a ConfigMap volume swaps a symlink the same way)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def metric(w: WorkerProcess, name: str, labels: str = "") -> float:
    return w.metric(name, labels)


async def until(pred: Any, what: str, limit_s: float = 60.0) -> None:
    """Wait for a condition (the limit only guards against hanging)."""
    deadline = time.monotonic() + limit_s
    while not pred():
        assert time.monotonic() < deadline, f"not reached: {what}"
        await asyncio.sleep(0.1)


async def next_publish(redis: Redis, after_ms: int, limit_s: float = 60.0) -> Publish:
    """The first complete-or-not publish generated after `after_ms`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        posts, meta = await read_trending(redis)
        if posts is not None and meta is not None and meta["generated_at_ms"] > after_ms:
            return posts, meta
        await asyncio.sleep(0.1)
    raise AssertionError("no publish in time")


def exact(events: list[dict[str, Any]], publish: Publish) -> bool:
    """The published list equals the brute-force top-(its length) over its own window."""
    posts, meta = publish
    return posts == oracle(events, Window(meta["window_start_ms"], meta["window_end_ms"]), len(posts))


def log_lines(w: WorkerProcess, needle: str) -> list[str]:
    assert w.log_path is not None
    return [line for line in w.log_path.read_text(errors="replace").splitlines() if needle in line]


@pytest.fixture
def cluster(kafka_service: LocalService, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """A 4-partition cluster whose workers are always stopped."""
    c = Cluster(kafka_service, redis_url, tmp_path, 4, prefix="reload-")
    yield c
    c.kill_all()


async def test_worker_reloads_on_file_change_and_sighup(
    cluster: Cluster, redis_client: Redis, tmp_path: Path
) -> None:
    """File change and SIGHUP each change the published top-K in the same process; an invalid
    file is rejected while publishing goes on; a topic change is reported, not applied."""
    conf = tmp_path / "w1.conf"
    write_config(conf, "JOB_TRENDING_TOPK=50\n")
    w = cluster.worker("w1", STREAMER_CONFIG_FILE=str(conf))
    w.wait_ready(90)
    pid = w.proc.pid if w.proc else 0
    events = random_events(3000, 300, now_ms(), seed=14)
    await produce(cluster.bootstrap, cluster.topic, keyed(events))
    posts, want, _ = await settle_exact(redis_client, events, 4, k=50)
    assert posts == want and len(posts) == 50
    assert metric(w, "streamer_config_generation") == 1

    write_config(conf, "# tuned\nJOB_TRENDING_TOPK=3\n")  # noticed by the watcher
    posts, want, _ = await settle_exact(redis_client, events, 4, k=3)
    assert posts == want and len(posts) == 3
    assert metric(w, "streamer_config_reloads_total", 'result="applied"') == 1
    assert metric(w, "streamer_config_generation") == 2

    write_config(conf, "JOB_TRENDING_TOPK=7\n")
    os.kill(pid, signal.SIGHUP)  # at once; the watcher would need two polls
    posts, want, _ = await settle_exact(redis_client, events, 4, k=7)
    assert posts == want and len(posts) == 7
    assert log_lines(w, "config reload (SIGHUP) applied, generation 3")
    assert w.proc is not None and w.proc.pid == pid and w.proc.poll() is None

    write_config(conf, "JOB_TRENDING_TOPK=seven\n")
    await until(lambda: metric(w, "streamer_config_reloads_total", 'result="rejected"') == 1,
                "rejected reload")
    rejected = log_lines(w, "rejected")
    assert len(rejected) == 1 and "JOB_TRENDING_TOPK: must be a whole number > 0" in rejected[0]
    after = await next_publish(redis_client, now_ms())
    assert len(after[0]) == 7 and exact(events, after)

    write_config(conf, "JOB_TRENDING_TOPK=7\nKAFKA_EVENTS_TOPIC=somewhere.else\n")
    await until(lambda: metric(w, "streamer_config_restart_pending") == 1, "restart-only report")
    assert log_lines(w, "KAFKA_EVENTS_TOPIC") and log_lines(w, "needs a restart")
    assert metric(w, "streamer_config_generation") == 3
    more = random_events(500, 50, now_ms(), seed=15)
    await produce(cluster.bootstrap, cluster.topic, keyed(more))  # still read from the old topic
    posts, want, _ = await settle_exact(redis_client, events + more, 4, k=7)
    assert posts == want and len(posts) == 7
    assert cluster.stop_all() == [0]


async def test_two_workers_reloading_a_tick_apart_publish_exact_lists(
    cluster: Cluster, redis_client: Redis, tmp_path: Path
) -> None:
    """The merger's K decides (its merge request names the depth every answer carries): while
    only the other worker runs K=3, publishes stay the exact top-50; once the merger reloads,
    the exact top-3."""
    conf_a, conf_b = tmp_path / "a.conf", tmp_path / "b.conf"
    write_config(conf_a, "JOB_TRENDING_TOPK=50\n")
    write_config(conf_b, "JOB_TRENDING_TOPK=50\n")
    events = random_events(3000, 300, now_ms(), seed=21)
    a = cluster.worker("a", STREAMER_CONFIG_FILE=str(conf_a))
    a.wait_ready(90)
    await produce(cluster.bootstrap, cluster.topic, keyed(events))
    await settle_exact(redis_client, events, 4, k=50)  # a publishes: it holds the merge lock
    b = cluster.worker("b", STREAMER_CONFIG_FILE=str(conf_b))
    b.wait_ready(120)
    await until(lambda: metric(b, "streamer_partitions_owned") > 0, "b owns partitions", 120)
    posts, want, _ = await settle_exact(redis_client, events, 4, k=50)
    assert posts == want

    write_config(conf_b, "JOB_TRENDING_TOPK=3\n")  # b first: the merger a still asks for 50
    await until(lambda: metric(b, "streamer_config_generation") == 2, "b reloaded")
    seen: list[Publish] = [await next_publish(redis_client, now_ms())]
    seen.append(await next_publish(redis_client, seen[-1][1]["generated_at_ms"]))
    assert all(len(p[0]) == 50 and p[1]["complete"] and exact(events, p) for p in seen)
    write_config(conf_a, "JOB_TRENDING_TOPK=3\n")
    await until(lambda: metric(a, "streamer_config_generation") == 2, "a reloaded")
    deadline = time.monotonic() + 60
    while len(seen[-1][0]) != 3:
        assert time.monotonic() < deadline, "no top-3 publish after the merger reloaded"
        seen.append(await next_publish(redis_client, seen[-1][1]["generated_at_ms"]))
    complete = [p for p in seen if p[1]["complete"]]
    assert complete and all(exact(events, p) for p in complete)
    assert {len(p[0]) for p in complete} <= {3, 50}
    assert len(seen[-1][0]) == 3 and exact(events, seen[-1])
    assert cluster.stop_all() == [0, 0]


SEED = (
    "import asyncio,sys,orjson;from streamer.settings.model import load_settings;"
    "from streamer.clickhouse.client import ClickHouse;from streamer.clickhouse import queries;"
    "from streamer.core.events import Event;s=load_settings();"
    "evs=[Event(e['event_id'],e['post_id'],e['user_id'],e['event_type'],e['ts'])"
    " for e in orjson.loads(open(sys.argv[1],'rb').read())];"
    "asyncio.run(queries.insert_events(ClickHouse.from_settings(s),evs))"
)


def start_jobs(
    env: dict[str, str], events: list[dict[str, Any]], data_dir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """Schema and the events in the child's own embedded ClickHouse, then `streamer jobs`,
    listening: (child, web port), another port if its first one was taken meanwhile."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {**env, "STREAMER_DATA_DIR": str(data_dir)}
    cmd = [sys.executable, "-m", "streamer"]
    subprocess.run([*cmd, "schema"], env=env, check=True, capture_output=True, timeout=120)
    dump = data_dir / "events.json"
    dump.write_bytes(orjson.dumps(events))
    subprocess.run([sys.executable, "-c", SEED, str(dump)], env=env, check=True,
                   capture_output=True, timeout=120)

    def spawn(port: int) -> subprocess.Popen[bytes]:
        with (data_dir / "jobs.log").open("wb") as log:
            return subprocess.Popen([*cmd, "jobs", "--job", "trending"],
                                    env={**env, "STREAMER_WEB_PORT": str(port)}, stdout=log,
                                    stderr=subprocess.STDOUT)

    return start_listening(spawn, data_dir / "jobs.log")


async def test_jobs_mode_reloads_on_file_change_and_sighup(
    subprocess_env: dict[str, str], redis_client: Redis, tmp_path: Path
) -> None:
    """`streamer jobs` (the standby, publishing as no stream is there): the same four cases."""
    conf = tmp_path / "jobs.conf"
    write_config(conf, "JOB_TRENDING_TOPK=50\n")
    env = {**subprocess_env, "JOB_TRENDING_INTERVAL_SEC": "2", "STREAMER_CONFIG_FILE": str(conf)}
    events = random_events(2000, 200, now_ms(), seed=31)
    proc, port = await asyncio.to_thread(start_jobs, env, events, tmp_path / "jobs")
    probe = WorkerProcess(env, tmp_path / "jobs", port=port)  # only for its HTTP helpers
    log = tmp_path / "jobs" / "jobs.log"
    try:
        first = await next_publish(redis_client, 0)
        assert len(first[0]) == 50 and exact(events, first)

        write_config(conf, "JOB_TRENDING_TOPK=3\n")
        await until(lambda: probe.metric("streamer_config_generation") == 2, "file reload")
        got = await next_publish(redis_client, now_ms())
        assert len(got[0]) == 3 and exact(events, got)

        write_config(conf, "JOB_TRENDING_TOPK=5\n")
        proc.send_signal(signal.SIGHUP)
        got = await next_publish(redis_client, now_ms())
        while len(got[0]) != 5:  # a publish already under way when the signal came
            got = await next_publish(redis_client, got[1]["generated_at_ms"])
        assert exact(events, got) and "config reload (SIGHUP) applied" in log.read_text()

        write_config(conf, "JOB_TRENDING_TOPK=5\nJOB_TRENDING_INTERVAL_SEC=0\n")
        await until(lambda: probe.metric("streamer_config_reloads_total", 'result="rejected"') == 1,
                    "rejected reload")
        assert "JOB_TRENDING_INTERVAL_SEC: must be a whole number > 0" in log.read_text()
        got = await next_publish(redis_client, now_ms())
        assert len(got[0]) == 5 and exact(events, got)

        write_config(conf, "JOB_TRENDING_TOPK=5\nJOB_TRENDING_WINDOW_HOURS=2\n")
        await until(lambda: probe.metric("streamer_config_restart_pending") == 1, "restart-only")
        assert "JOB_TRENDING_WINDOW_HOURS 1 -> 2 changed, needs a restart" in log.read_text()
        got = await next_publish(redis_client, now_ms())  # still the 1 h key, still 5 entries
        assert len(got[0]) == 5 and exact(events, got)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
