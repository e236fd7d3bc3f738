"""One measurement each: a worker drain, the raw baselines, the RSS phases, the publish."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as sync_redis

from benchmarks import state_adapter as sa
from benchmarks.common import memory_status, timed
from benchmarks.stream_baseline import raw_rate
from benchmarks.stream_exact import TOPK, verify_publish
from benchmarks.stream_profile import Recorder, summarize
from benchmarks.stream_state import changelog_size
from benchmarks.stream_worker import SUNK, Target, Worker, sample_until, steady_rate, wait_processed
from benchmarks.stream_workloads import PARTITIONS, Form, Workload, events_for_posts, messages, produce
from streamer.kafka.admin import ensure_topics


@dataclass(frozen=True, slots=True)
class Rig:
    """The private broker and Redis of a run, where worker data dirs go, and the size mode."""

    bootstrap: str
    redis_port: int
    work_dir: Path
    quick: bool

    @property
    def drain_timeout_s(self) -> float:
        """How long one worker run may take before it counts as failed."""
        return 180 if self.quick else 900


def unique(prefix: str) -> str:
    """A fresh topic or app id."""
    return f"{prefix}-{secrets.token_hex(4)}"


async def publish_workload(rig: Rig, load: Workload) -> None:
    """Produce the workload once per message form, each to its own topic."""
    for form in ("single", "array"):
        topic = unique(f"bench.{load.name}.{form}")
        await ensure_topics(rig.bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
        msgs = messages(load.events, form)
        await produce(rig.bootstrap, topic, msgs)
        load.topics[form], load.messages[form] = topic, len(msgs)


async def baselines(rig: Rig, load: Workload, form: Form) -> dict[str, float]:
    """Raw consumer events/s with stdlib json and with orjson over the same topic."""
    min_s = 0.3 if rig.quick else 1.0
    args = (rig.bootstrap, load.topics[form], PARTITIONS, len(load.events))
    return {dec: await raw_rate(*args, decoder=dec, min_s=min_s) for dec in ("stdlib", "orjson")}


def _workers(rig: Rig, config: str, topic: str, count: int) -> tuple[str, list[Worker]]:
    sync_redis.Redis(port=rig.redis_port).flushall()
    app_id = unique("bench")
    target = Target(rig.redis_port, rig.bootstrap, topic, app_id)
    return app_id, [Worker(config, target, rig.work_dir / app_id / f"w{i}").start() for i in range(count)]


async def worker_case(rig: Rig, load: Workload, form: Form, config: str, count: int) -> dict[str, Any]:
    """Drain a pre-produced topic with `count` fresh workers; rate, exactness, changelog size."""
    app_id, workers = _workers(rig, config, load.topics[form], count)
    try:
        samples = await sample_until(workers, len(load.events), rig.drain_timeout_s)
        rate, drain_s = steady_rate(samples)
        rss_end = sum(w.rss() for w in workers)
        detail = await verify_publish(rig.redis_port, load.events, time.time_ns() // 1_000_000)
        counted = sum(await asyncio.gather(*(w.processed() for w in workers)))
    finally:
        for w in workers:
            w.stop()
    out: dict[str, Any] = {"rate": rate, "drain_s": drain_s, "rss_end": rss_end, "counted": counted}
    out["exact"] = counted == len(load.events) and detail == "exact"
    out["detail"] = f"counted {counted:,.0f} of {len(load.events):,}; publish {detail}"
    if count == 1:
        size = await changelog_size(rig.bootstrap, app_id)
        out.update(changelog_records=size.records, changelog_bytes=size.value_bytes)
    return out


async def _profiled_drain(rig: Rig, load: Workload, form: Form, config: str) -> str:
    """One fresh worker draining the topic under py-spy, first counted event to the last: raw stacks."""
    _, workers = _workers(rig, config, load.topics[form], 1)
    raw_out = rig.work_dir / f"profile-{secrets.token_hex(3)}.raw"
    recorders: list[Recorder] = []
    try:
        await sample_until(
            workers,
            len(load.events),
            rig.drain_timeout_s,
            lambda: recorders.append(Recorder(workers[0].pid, raw_out)),
        )
        return recorders[0].stop() if recorders else ""
    finally:
        workers[0].stop()


async def profile_case(rig: Rig, load: Workload, form: Form, config: str, out: Path, drains: int) -> str:
    """Extra (unmeasured) drains of one worker under py-spy, stacks pooled; the summary goes to `out`."""
    raw = "\n".join([await _profiled_drain(rig, load, form, config) for _ in range(drains)])
    title = f"{drains} drains by one fresh worker ({config}), {load.name} workload, {form} messages"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(summarize(raw, title) + "\n")  # noqa: ASYNC240 - once, after the measurement
    return out.name


async def rss_case(rig: Rig, config: str, posts: int, extra_per_post: int, now_ms: int) -> dict[str, Any]:
    """RSS of one running worker: ready (after recovery), after `posts` posts x 1 event, after more events.

    Phase 1 gives bytes per active post (with its first event), phase 2 bytes per further in-window event,
    each read once the worker counted the phase's events and (sink on) inserted them into ClickHouse;
    each of VmRSS and of its anonymous part (RssAnon: what the worker holds, not library text).
    """
    post_ids = random.Random(31).sample(range(1, 10**12), posts)
    phase1 = events_for_posts(post_ids, 1, now_ms, seed=32)
    phase2 = events_for_posts(post_ids, extra_per_post, now_ms, seed=33)
    topic = unique("bench.rss")
    await ensure_topics(rig.bootstrap, {topic: PARTITIONS, topic + ".dlq": 1})
    _, workers = _workers(rig, config, topic, 1)
    worker = workers[0]
    try:
        await worker.wait_ready(rig.drain_timeout_s)
        status = [memory_status(worker.pid)]
        for total, batch in ((len(phase1), phase1), (len(phase1) + len(phase2), phase2)):
            await produce(rig.bootstrap, topic, messages(batch, "array"))
            await wait_processed(workers, total, rig.drain_timeout_s)
            if worker.sinks:  # read once the sink inserted them too (its batch is not held)
                await wait_processed(workers, total, rig.drain_timeout_s, SUNK)
            status.append(memory_status(worker.pid))
        counted = await worker.processed()
    finally:
        worker.stop()
    out: dict[str, Any] = {"config": config, "posts": posts, "events": len(phase1) + len(phase2),
                           "counted": counted}
    for key, name in (("rss", ""), ("anon", "_anon"), ("file", "_file")):
        values = [s[key] for s in status]
        out[key] = values
        out["per_post" + name] = (values[1] - values[0]) / posts
        out["per_event" + name] = (values[2] - values[1]) / len(phase2)
        out["per_event_overall" + name] = (values[2] - values[0]) / (len(phase1) + len(phase2))
    return out


def publish_case(posts: int, partitions: int, now_ms: int, repeats: int) -> dict[str, Any]:
    """Global top-50 over `posts` posts in `partitions` partitions (best of `repeats`) vs a full sort."""
    parts = sa.publish_state(posts, partitions, now_ms)
    began = time.perf_counter()
    full = sa.publish_full_sort(parts, TOPK)
    sort_s = time.perf_counter() - began
    pub_s = min(timed(lambda: sa.publish_top(parts, TOPK)) for _ in range(repeats))
    same = sa.publish_top(parts, TOPK) == full
    return {
        "posts": posts,
        "partitions": partitions,
        "ms": pub_s * 1000,
        "full_sort_ms": sort_s * 1000,
        "exact": same,
    }
