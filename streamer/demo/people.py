"""The demo's second list: trending counted in people, beside the one counted in events.

At the end of the traffic one account sends a burst of likes to one new post, enough to top
the `events` list. After the worker has stopped (its sink flushed to ClickHouse), a one-shot
ClickHouse-mode trending job with JOB_TRENDING_COUNT=people and a minimum of accounts
publishes the `people` list into its own Redis database; both lists are checked against a
recount from the produced events, and the summary shows them side by side.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from redis.asyncio import Redis
from rich.console import RenderableType
from rich.table import Table

from streamer.core.events import Event
from streamer.core.payloads import decode_trending, trending_key, trending_meta_key
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import Window, window_at
from streamer.demo.poll import Snapshot
from streamer.demo.summary import Verdict
from streamer.demo.traffic import MessagePlan, TrafficModel, TrafficRecord, recompute_trending

if TYPE_CHECKING:
    from streamer.demo.steps import Demo

MIN_PEOPLE = 3  # JOB_TRENDING_MIN_PEOPLE of the people list: one account alone never lists a post
PEOPLE_DB = 1  # the people list's Redis database (the worker's list stays in db 0)
BURST_MARGIN = 1.5  # the burst's score over the top post's score when it is sent


def plan_burst(model: TrafficModel, record: TrafficRecord, now_ms: int, window_minutes: int) -> list[
        MessagePlan]:
    """Likes from one new account to one new post, worth BURST_MARGIN x the top post's score."""
    top = recompute_trending(record.buckets.items(), window_at(now_ms, window_minutes), 1)
    likes = int((top[0].rank if top else 0) * BURST_MARGIN) // 20 + 10
    post_id, user_id = len(model.lives.post_ids) + 1, model.users + 1
    events = []
    for _ in range(likes):
        model.seq += 1
        events.append(Event(f"{model.id_prefix}-{model.seq:09d}", post_id, user_id, "like",
                            now_ms - model.rng.randint(0, 1500)))
    record.burst = {"post_id": post_id, "user_id": user_id, "events": likes}
    key, size = str(post_id).encode(), model.shape.max_batch
    return [MessagePlan(key, orjson.dumps([e.to_dict() for e in events[i : i + size]]),
                        new_events=events[i : i + size], kind="batch")
            for i in range(0, len(events), size)]


def recompute_people(
    accounts: Iterable[tuple[tuple[int, int], list[set[int]]]], window: Window, k: int,
    min_people: int,
) -> list[PostCounts]:
    """Distinct accounts per post and type over the window; listed with >= min_people accounts."""
    per_post: dict[int, list[set[int]]] = {}
    first, last = window.first_minute, window.last_minute
    for (post_id, minute), sets in accounts:
        if first <= minute <= last:
            acc = per_post.setdefault(post_id, [set(), set(), set(), set()])
            for i in range(4):
                acc[i] |= sets[i]
    listed = [PostCounts(p, *(len(s) for s in sets)) for p, sets in per_post.items()
              if len(set().union(*sets)) >= min_people]
    return rank_posts(listed, k)


@dataclass
class PeopleList:
    """The published people list, its check, and where the burst's post ranks in both lists."""

    verdict: Verdict
    events_rank: int  # 0: not listed
    people_rank: int


def people_env(demo: Demo) -> dict[str, str]:
    """The worker's environment, counting people into its own Redis database."""
    env = dict(demo.env)
    env.update({"REDIS_URL": f"redis://127.0.0.1:{demo.ports['redis']}/{PEOPLE_DB}",
                "JOB_TRENDING_COUNT": "people", "JOB_TRENDING_MIN_PEOPLE": str(MIN_PEOPLE)})
    return env


async def publish_people_list(demo: Demo) -> PeopleList | None:
    """Run the people job once (the worker has stopped: ClickHouse is free) and check its list."""
    demo.view.step("Publishing the same window counted in people (`streamer jobs --once --job "
                   f"trending --force` with JOB_TRENDING_COUNT=people, JOB_TRENDING_MIN_PEOPLE="
                   f"{MIN_PEOPLE}, into Redis db {PEOPLE_DB})…")
    proc = await demo.procs.spawn("people-job", [
        sys.executable, "-m", "streamer", "jobs", "--once", "--job", "trending", "--force"],
        people_env(demo), demo.data_dir / "people-job.log")
    stopped = asyncio.create_task(demo.stop.wait())
    await asyncio.wait([asyncio.create_task(proc.wait()), stopped],
                       return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    await demo.forget("people-job")
    if proc.returncode != 0:
        demo.view.error(f"the people job failed; see {demo.data_dir / 'people-job.log'}")
        return None
    snap = await read_list(demo)
    verdict = check_people(demo, snap)
    demo.view.ok("people list published" + ("" if verdict.ok else " but it differs from the recount"))
    return PeopleList(verdict, burst_rank(demo, demo.final), burst_rank(demo, snap))


async def read_list(demo: Demo) -> Snapshot:
    """The people list and its meta from their Redis database."""
    hours = demo.settings.job_trending_window_hours
    redis = Redis.from_url(f"redis://127.0.0.1:{demo.ports['redis']}/{PEOPLE_DB}")
    try:
        raw, meta = await redis.mget([trending_key(hours), trending_meta_key(hours)])
    finally:
        await redis.aclose()
    snap = Snapshot(0.0, meta=orjson.loads(meta) if meta else None)
    if raw is not None:
        snap.trending_raw = raw if isinstance(raw, bytes) else str(raw).encode()
        snap.trending = decode_trending(snap.trending_raw)
    return snap


def check_people(demo: Demo, snap: Snapshot) -> Verdict:
    """The people list against distinct accounts recounted from the produced events."""
    if snap.meta is None or snap.trending is None:
        return Verdict(False, "the people job published nothing", snap)
    window = Window(int(snap.meta["window_start_ms"]), int(snap.meta["window_end_ms"]))
    expected = recompute_people(demo.record.people.items(), window,
                                demo.settings.job_trending_topk, MIN_PEOPLE)
    return Verdict.of(snap, expected)


def burst_rank(demo: Demo, snap: Snapshot | None) -> int:
    """1-based rank of the burst's post in a list (0: not listed)."""
    post = demo.record.burst.get("post_id")
    posts = [p.post_id for p in (snap.trending or [])] if snap else []
    return posts.index(post) + 1 if post in posts else 0


def people_lines(found: PeopleList | None, burst: dict[str, int]) -> list[str]:
    """Summary sentences: the burst's rank in both lists, and the people list's check."""
    if found is None:
        return ["  people list: SKIPPED (the run was stopped, failed, or the people job failed)"]
    out = []
    if burst:
        where = (f"rank {found.people_rank}" if found.people_rank
                 else f"not listed (1 account; a post needs {MIN_PEOPLE})")
        out.append(f"  burst: account {burst['user_id']} sent {burst['events']:,} likes to post "
                   f"{burst['post_id']}: rank {found.events_rank or '-'} in the events list, "
                   f"{where} in the people list")
    word = "OK" if found.verdict.ok else "MISMATCH"
    out.append(f"  people list verified against recomputation: {word}")
    out.append(f"    {found.verdict.detail.replace('four counters', 'four counts of accounts')}")
    return out


def side_by_side(
    events: list[PostCounts], people: list[PostCounts], burst_post: int | None, rows: int = 10
) -> tuple[RenderableType, list[str]]:
    """Both top lists, rank by rank, as a rich table and as plain lines (* marks the burst)."""
    table = Table(title="Trending counted in events (worker) and in people (accounts)")
    for col in ("#", "events: post", "score", "likes", "people: post", "score", "likers"):
        table.add_column(col, justify="right")
    plain = ["", "Trending side by side: rank | events: post score likes | people: post score "
                 "accounts-liking (* = the burst's post)"]
    for i in range(min(rows, max(len(events), len(people)))):
        cells: list[str] = [str(i + 1)]
        for posts in (events, people):
            p = posts[i] if i < len(posts) else None
            cells += (["", "", ""] if p is None else
                      [f"{p.post_id}{'*' if p.post_id == burst_post else ''}", f"{p.score:,.1f}",
                       f"{p.likes:,}"])
        table.add_row(*cells)
        plain.append("  " + " ".join(c or "-" for c in cells))
    return table, plain


def report_of(found: PeopleList | None) -> dict[str, Any] | None:
    """The people list for the JSON report."""
    if found is None or found.verdict.snapshot is None:
        return None
    snap = found.verdict.snapshot
    return {"verified": found.verdict.ok, "verdict": found.verdict.detail,
            "trending": orjson.loads(snap.trending_raw) if snap.trending_raw else None,
            "meta": snap.meta, "events_rank": found.events_rank, "people_rank": found.people_rank,
            "min_people": MIN_PEOPLE}
