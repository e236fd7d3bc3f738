"""Every publish tick and every reconcile run logs under its own correlation id, so one publish
can be followed from its merge request to its Redis write."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson

from tests.stream_helpers import Cluster, WorkerProcess, keyed, now_ms, produce, random_events


def json_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's JSON log records so far."""
    assert worker.log_path is not None
    out = []
    for line in worker.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(orjson.loads(line))
    return out


def ids_by_prefix(records: list[dict[str, Any]], prefix: str) -> dict[str, list[str]]:
    """Messages per correlation id starting with prefix."""
    runs: dict[str, list[str]] = defaultdict(list)
    for r in records:
        if str(r.get("correlation_id", "")).startswith(prefix + "-"):
            runs[r["correlation_id"]].append(r["msg"])
    return runs


def complete_publishes(records: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Publish ticks whose request line and write line share their id."""
    return {cid: msgs for cid, msgs in ids_by_prefix(records, "publish").items()
            if any(m.startswith("merge request") for m in msgs)
            and any(m.startswith("published") for m in msgs)}


async def test_publish_ticks_and_reconcile_runs_carry_their_own_ids(cluster: Cluster) -> None:
    worker = cluster.worker("w1", LOG_FORMAT="json", LOG_LEVEL="DEBUG",
                            JOB_RECONCILE_INTERVAL_SEC="3")
    worker.wait_ready()
    await produce(cluster.bootstrap, cluster.topic, keyed(random_events(200, 20, now_ms(), 3)))
    deadline = time.monotonic() + 60
    while True:
        records = json_lines(worker)
        publishes = complete_publishes(records)
        reconciles = ids_by_prefix(records, "reconcile")
        if len(publishes) >= 3 and any(m.startswith("reconcile [") for ms in reconciles.values()
                                       for m in ms):
            break
        assert time.monotonic() < deadline, (
            f"publishes {len(publishes)}, reconcile runs {dict(reconciles)}\n{worker.tail(30)}")
        await asyncio.sleep(0.5)
    for cid, msgs in publishes.items():
        request_ids = {m.split()[2] for m in msgs if m.startswith("merge request")}
        written = [m for m in msgs if m.startswith("published")]
        assert len(request_ids) == 1 and len(written) == 1, (cid, msgs)  # one tick, one id
        assert f"request {request_ids.pop()})" in written[0], (cid, msgs)
    assert cluster.stop_all() == [0]
