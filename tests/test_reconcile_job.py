"""Reconciler against real Redis and embedded ClickHouse: clean runs, one-sided events, drift."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import replace

import orjson
import pytest
from redis.asyncio import Redis

from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import wall_ms
from streamer.core.events import EVENT_TYPE_INDEX, Event
from streamer.core.payloads import reconcile_key, sink_positions_key
from streamer.core.reconcile import StreamSnapshot
from streamer.core.scoring import PostCounts, rank_posts
from streamer.core.window import MINUTE_MS, Window, complete_window_at
from streamer.jobs import reconcile as reconcile_job
from streamer.jobs.reconcile import Reconciler, make_stream_reconciler
from streamer.ops.metrics import REGISTRY
from streamer.settings.model import Settings

K = 10
PARTITIONS = 4


def make_events(window: Window, n: int, seed: int = 7) -> list[Event]:
    """Skewed events inside the window, plus a few just outside it on both sides."""
    rng = random.Random(seed)
    types = ["view"] * 12 + ["like"] * 4 + ["comment"] * 2 + ["share"]
    out = [
        Event(f"e{i}", int(300 * rng.random() ** 2), rng.randrange(500), rng.choice(types),
              rng.randrange(window.start_ms, window.end_ms))
        for i in range(n)
    ]
    out.append(Event("before", 1, 1, "share", window.start_ms - 1))
    out.append(Event("current-minute", 1, 1, "share", window.end_ms))
    return out


def snapshot_from(events: Sequence[Event], window: Window, depth: int = 2 * K) -> StreamSnapshot:
    """What a correct stream would hand over: per-partition top-depth over the window."""
    seen: set[str] = set()
    counts: dict[int, list[int]] = {}
    for e in events:
        if e.event_id in seen or not window.contains(e.ts_ms):
            continue
        seen.add(e.event_id)
        counts.setdefault(e.post_id, [0, 0, 0, 0])[EVENT_TYPE_INDEX[e.event_type]] += 1
    posts = [PostCounts(pid, *c) for pid, c in counts.items()]
    union: list[PostCounts] = []
    for part in range(PARTITIONS):
        union += rank_posts([p for p in posts if p.post_id % PARTITIONS == part], depth)
    return StreamSnapshot(window, union, len(seen), list(range(PARTITIONS)), [])


def extra(post_id: int, event_type: str, n: int, window: Window, tag: str) -> list[Event]:
    """n events of one type for one post, inside the window."""
    return [Event(f"{tag}{i}", post_id, 9, event_type, window.start_ms + MINUTE_MS + i)
            for i in range(n)]


def metric(name: str, labels: dict[str, str] | None = None) -> float | None:
    """Current value of a gauge in the process registry."""
    return REGISTRY.get_sample_value(name, labels or {})


@pytest.fixture
def rsettings(settings: Settings) -> Settings:
    """Small top-K so the test data has a clear ranking."""
    return settings.model_copy(update={"job_trending_topk": K, "reconcile_drift_runs": 2})


@pytest.fixture
async def loaded(clickhouse: ClickHouse) -> tuple[Window, list[Event]]:
    """2,000 events in ClickHouse (a slice inserted twice: repeated rows count once)."""
    window = complete_window_at(wall_ms(), 60)
    events = make_events(window, 2000)
    await queries.insert_events(clickhouse, events)
    await queries.insert_events(clickhouse, events[:300])
    return window, events


def reconciler(settings: Settings, ch: ClickHouse, redis: Redis) -> Reconciler:
    """A Reconciler that does not wait for a sink (the test wrote ClickHouse itself)."""
    return Reconciler(settings, ch, redis, flush_wait_s=0.0)


class TestReconciler:
    """One class per unit: what a run reports, writes and decides."""

    async def test_clean_snapshot_reconciles_to_overlap_one_and_zero_deltas(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """The same events on both sides: overlap 1.0, zero deltas, report in Redis, metrics."""
        window, events = loaded
        runs = {"job": "reconcile", "status": "success"}
        runs_before = metric("streamer_job_runs_total", runs) or 0  # process-global: a delta
        report = await reconciler(rsettings, clickhouse, redis_client).run(
            snapshot_from(events, window))
        assert report.topk_overlap == 1.0 and report.rank_agreement == 1.0
        assert report.max_score_delta == 0.0 and report.differences == []
        assert report.stream_events == report.clickhouse_events == 2000
        assert report.agrees and report.drifted is False and report.mode == "stream"
        raw = await redis_client.get(reconcile_key(1))
        assert raw is not None
        stored = orjson.loads(raw)
        assert (stored["window_start_ms"], stored["window_end_ms"]) == (window.start_ms,
                                                                         window.end_ms)
        assert stored["generated_at_ms"] > 0 and stored["agrees"] is True
        assert 0 < await redis_client.pttl(reconcile_key(1)) <= 1_200_000
        assert metric("streamer_reconcile_topk_overlap") == 1.0
        assert metric("streamer_reconcile_max_score_delta") == 0.0
        assert metric("streamer_job_runs_total", runs) == runs_before + 1

    async def test_events_only_in_clickhouse_are_detected(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """ClickHouse-only events: a new post reported absent, a top post with a views delta."""
        window, events = loaded
        snapshot = snapshot_from(events, window)
        top_post = rank_posts(snapshot.posts, 1)[0].post_id
        missed = extra(9999, "like", 100, window, "ch-a") + extra(top_post, "view", 5, window, "ch-b")
        await queries.insert_events(clickhouse, missed)
        report = await reconciler(rsettings, clickhouse, redis_client).run(snapshot)
        diffs = {d.post_id: d.to_payload() for d in report.differences}
        assert set(diffs) == {9999, top_post}
        assert diffs[9999]["stream_absent"] is True and diffs[9999]["clickhouse_position"] == 1
        assert diffs[9999]["clickhouse"]["likes"] == 100
        assert diffs[9999]["abs_score_delta_at_least"] > 0
        assert diffs[top_post]["delta"] == {"views": -5, "likes": 0, "comments": 0, "shares": 0,
                                            "score": -0.5}
        assert report.topk_overlap == (K - 1) / K
        assert report.max_score_delta_post == 9999
        payload = report.to_payload()
        assert payload["events"]["only_in_clickhouse"] == 105
        assert payload["events"]["only_in_stream"] == 0

    async def test_events_only_in_the_stream_are_detected(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """Stream-only events (never sunk to ClickHouse) show as positive deltas on their posts."""
        window, events = loaded
        base = snapshot_from(events, window)
        second = rank_posts(base.posts, 2)[1].post_id
        snapshot = snapshot_from(events + extra(second, "share", 7, window, "s-"), window)
        report = await reconciler(rsettings, clickhouse, redis_client).run(snapshot)
        (diff,) = report.differences
        assert diff.post_id == second
        assert diff.to_payload()["delta"]["shares"] == 7
        assert report.max_score_delta == 35.0 and report.max_score_delta_post == second
        assert report.to_payload()["events"]["only_in_stream"] == 7

    async def test_drift_policy_switches_to_clickhouse_and_back(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """Two drifted runs switch to ClickHouse (metrics follow); an agreeing run returns."""
        window, events = loaded
        rec = reconciler(rsettings, clickhouse, redis_client)
        drifted = snapshot_from(events + extra(5, "share", 50, window, "d-"), window)
        first = await rec.run(drifted)
        assert first.drifted is True and not rec.use_clickhouse and first.mode == "stream"
        second = await rec.run(drifted)
        assert rec.use_clickhouse and second.mode == "clickhouse"
        assert second.consecutive_drift_runs == 2
        assert metric("streamer_reconcile_drift") == 1.0
        assert metric("streamer_mode", {"mode": "clickhouse"}) == 1.0
        stored = orjson.loads(await redis_client.get(reconcile_key(1)) or b"{}")
        assert stored["mode"] == "clickhouse" and stored["drifted"] is True
        clean = await rec.run(snapshot_from(events, window))
        assert clean.agrees and not rec.use_clickhouse and rec.mode == "stream"
        assert metric("streamer_reconcile_drift") == 0.0
        assert metric("streamer_mode", {"mode": "stream"}) == 1.0

    async def test_a_run_with_the_sink_behind_is_not_judged(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]], monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The sink has not written what the stream read: ClickHouse may lack rows, so a run that
        looks drifted is reported, not judged (a slow sink never switches trending); once the
        sink's positions reach the stream's, the same snapshot is judged."""
        monkeypatch.setattr(reconcile_job, "SINK_WAIT_EXTRA_S", 0.3)
        window, events = loaded
        rec = reconciler(rsettings, clickhouse, redis_client)
        offsets = [10**9] * PARTITIONS
        drifted = replace(snapshot_from(events + extra(5, "share", 50, window, "d-"), window),
                          offsets=offsets)
        for _ in range(rsettings.reconcile_drift_runs + 1):
            report = await rec.run(drifted)
            assert report.drifted is None and not rec.use_clickhouse and report.mode == "stream"
        key = sink_positions_key(rsettings.streamer_app_id, clickhouse.engine_id)
        await redis_client.hset(key, mapping={str(p): o for p, o in enumerate(offsets)})
        assert (await rec.run(drifted)).drifted is True

    async def test_incomplete_snapshot_keeps_the_mode(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """Missing partitions are reported but neither count as drift nor as agreement."""
        window, events = loaded
        rec = reconciler(rsettings, clickhouse, redis_client)
        full = snapshot_from(events, window)
        partial = StreamSnapshot(window, [p for p in full.posts if p.post_id % 4 != 3],
                                 full.events, [0, 1, 2], [3])
        report = await rec.run(partial)
        assert report.drifted is None and not report.complete
        assert rec.policy.consecutive == 0 and not rec.use_clickhouse

    async def test_waits_for_the_sink_flush_before_querying(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
    ) -> None:
        """By default the run first sleeps STREAMER_SINK_FLUSH_MS plus a margin."""
        slept: list[float] = []

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)

        rec = Reconciler(rsettings, clickhouse, redis_client, sleep=fake_sleep)
        window = complete_window_at(wall_ms(), 60)
        report = await rec.run(StreamSnapshot(window, [], 0, [0], []))
        assert slept == [rsettings.streamer_sink_flush_ms / 1000 + 2.0]
        assert report.agrees and report.stream_topk == report.clickhouse_topk == []


class TestStreamHook:
    """What the worker gets from `make_stream_reconciler`."""

    async def test_accepts_the_mergers_global_top(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """A global top-2K view of the same events reconciles exactly; an absent post is bounded."""
        window, events = loaded
        union = snapshot_from(events, window)
        # What the merger sends: the global top-2K of all partitions, merged to depth 2K.
        view = StreamSnapshot(window, rank_posts(union.posts, 2 * K), union.events, [0, 1, 2, 3], [],
                              2 * K)
        hook = make_stream_reconciler(rsettings, clickhouse, redis_client)
        rec = hook.reconciler
        assert rec.flush_wait_s == rsettings.streamer_sink_flush_ms / 1000 + 2.0
        rec.settings = rsettings.model_copy(update={"streamer_sink_flush_ms": 5_000})  # a reload
        assert rec.flush_wait_s == 7.0
        rec.fixed_flush_wait_s = 0.0
        assert (await rec.run(view)).agrees
        await queries.insert_events(clickhouse, extra(7777, "share", 40, window, "x-"))
        report = await rec.run(view)
        (diff,) = report.differences
        assert diff.post_id == 7777 and diff.stream is None
        bound = rank_posts(union.posts, 2 * K)[-1].rank
        assert diff.to_payload()["stream_score_at_most"] == bound / 10

    async def test_hook_runs_in_the_background_one_at_a_time(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """The hook returns at once with a task; a second snapshot while one runs is skipped."""
        window, events = loaded
        gate = asyncio.Event()

        async def held_sleep(_: float) -> None:
            await gate.wait()

        hook = make_stream_reconciler(rsettings, clickhouse, redis_client)
        hook.reconciler.sleep = held_sleep
        task = await hook.run(snapshot_from(events, window))
        assert task is not None and not task.done()
        assert await hook.run(snapshot_from(events, window)) is None
        gate.set()
        report = await task
        assert report is not None and report.agrees and hook.mode == "stream"
        assert not hook.use_clickhouse

    async def test_stop_cancels_a_run_in_progress(
        self, rsettings: Settings, clickhouse: ClickHouse, redis_client: Redis,
        loaded: tuple[Window, list[Event]],
    ) -> None:
        """The worker stops while a run waits for the sink: stop() cancels it and waits."""
        window, events = loaded
        hook = make_stream_reconciler(rsettings, clickhouse, redis_client)
        hook.reconciler.sleep = lambda _: asyncio.Event().wait()  # type: ignore[assignment,return-value]
        task = await hook.run(snapshot_from(events, window))
        assert task is not None and not task.done()
        await hook.stop()
        assert task.cancelled()
        await hook.stop()  # nothing running: a no-op
