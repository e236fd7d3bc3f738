"""Suggested users for every active user: planned runs, split into shards shared by replicas.

A run is planned once (active users by activity, what changed since the last successful run)
and stored in Redis; any replica then claims shards in priority order and, per block of users,
renews the TTL of unchanged keys and recomputes the rest with one ClickHouse query, writing one
Redis pipeline per JOB_SUGGESTION_BATCH_SIZE users after a fence check. The replica finishing
the last shard commits the run (its snapshot becomes the baseline of the next incremental run).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.cache.suggestions import PLAN_TTL_MS, RunState, RunStore, SuggestRunStatus, new_run_token
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clock import Clock, wall_ms
from streamer.core.suggest import Suggestion, top_up
from streamer.core.suggest_plan import (
    Snapshot,
    changed_accounts,
    decode_shard,
    decode_snapshot,
    encode_shard,
    encode_snapshot,
    recompute_set,
    run_params,
    split_shards,
)
from streamer.errors import LockLost
from streamer.jobs.base import Job
from streamer.jobs.runner import replica_name
from streamer.ops.metrics import (
    JOB_DURATION,
    JOB_LAST_SUCCESS,
    JOB_RUNS,
    SUGGESTION_SHARDS,
    SUGGESTION_USERS,
)
from streamer.settings.live import LiveSettings, live_of
from streamer.settings.model import Settings

log = logging.getLogger("streamer.jobs.suggestions")
Ranked = dict[int, list[Suggestion]]
Computed = tuple[Ranked, list[int]]  # a block's lists, and its users topped up (fallback)
# First prefix of the popular accounts a run reads (longer only when a user's exclusions need it).
POPULAR_PREFIX = 1000
# Above this share (and number) of accounts with changed follows, a full run is cheaper than
# finding who follows them.
MAX_CHANGED_SHARE = 0.25
MIN_CHANGED_FOR_FULL = 10_000
# A run still open this long after its plan is given up and planned anew: its plan keys
# (PLAN_TTL_MS) would expire before it could end, e.g. after every replica was down for a day.
ABANDON_AFTER_MS = PLAN_TTL_MS // 2


class PopularAccounts:
    """The most-followed accounts, read once per run (again only for a longer prefix)."""

    def __init__(self, ch: ClickHouse) -> None:
        self.ch = ch
        self.token = ""
        self.ids: list[int] = []
        self.complete = False

    async def prefix(self, token: str, needed: int) -> list[int]:
        """At least `needed` accounts in order (or all there are) for run `token`."""
        if token != self.token:
            self.token, self.ids, self.complete = token, [], False
        if not self.complete and len(self.ids) < needed:
            asked = max(needed, 2 * len(self.ids), POPULAR_PREFIX)
            self.ids = await queries.popular_accounts(self.ch, asked)
            self.complete = len(self.ids) < asked
        return self.ids


@dataclass(slots=True)
class Tally:
    """What this replica did in one call of run()."""

    recomputed: int = 0
    renewed: int = 0
    stale: int = 0
    shards: int = 0
    committed: bool = False


def poll_interval_s(interval_s: int) -> float:
    """How often a replica looks for a due or running run (so replicas join a run early)."""
    return float(min(interval_s, max(1, interval_s // 20)))


class SuggestionsJob(Job):
    """Adamic-Adar suggestions from ClickHouse's follow graph into Redis."""

    name = "suggestions"
    counts_calls_as_runs = False  # a run spans polls, shards and replicas: _count_run counts it
    exclusive = False  # coordinates itself: one run lock, one claim per shard

    def __init__(
        self,
        settings: Settings | LiveSettings,
        ch: ClickHouse,
        redis: Redis,
        clock: Clock = wall_ms,
        *,
        full: bool = False,
        once: bool = False,
        owner: str = "",
    ) -> None:
        self.live = live_of(settings)
        self.ch = ch
        self.redis = redis
        self.clock = clock
        self.store = RunStore(redis, self.live.current.streamer_app_id)
        self.full_requested = full
        self.once = once
        self.owner = owner or replica_name()
        self._warned_token = ""
        self.popular = PopularAccounts(ch)
        self.refresh()

    def refresh(self) -> None:
        """Settings of the next run (the runner calls this between runs)."""
        self.settings = self.live.current
        self.interval_s = poll_interval_s(self.settings.job_suggestion_interval_sec)

    async def should_run(self) -> tuple[bool, str]:
        """Run when asked to, when a run is in progress (join it) or when the next one is due."""
        state = await self.store.state()
        holder = await self.store.lock_holder()
        if holder is not None and (state is None or holder != state.token):
            return False, f"run {holder} holds the suggestion keys"
        if self.once or self.full_requested or state is None or state.status is SuggestRunStatus.RUNNING:
            return True, ""
        wait_ms = state.plan_ms + self.settings.job_suggestion_interval_sec * 1000 - self.clock()
        if wait_ms <= 0:
            return True, ""
        return False, f"next run due in {wait_ms / 1000:.0f} s"

    async def run(self, lock: RedisLock | None) -> str:
        """Join the run in progress or plan a new one, then work shards until none is left."""
        state = await self.store.state()
        abandoned = state is not None and self._abandoned(state)
        if state is None or state.status is not SuggestRunStatus.RUNNING or self.full_requested or abandoned:
            planned = await self._plan(state)
            if planned is None:
                holder = await self.store.lock_holder()
                if self.once and self.full_requested:  # `jobs --once --full` did not do its run
                    raise LockLost(f"full run refused: run {holder} holds the suggestion keys")
                return f"skipped: run {holder} holds the suggestion keys"
            self.full_requested = False
            state = planned
        elif not await self.store.take_run_lock(state.token):
            return f"skipped: run {await self.store.lock_holder()} holds the suggestion keys"
        tally = await self._work(state)
        self._count(tally)
        self._count_run(state, tally)
        end = "run complete" if tally.committed else "other shards left to other replicas"
        return (f"run {state.run_no} ({state.mode}, {state.users} active users): "
                f"{tally.recomputed} recomputed, {tally.renewed} renewed, {tally.stale} stale "
                f"in {tally.shards} shards; {end}")

    def _abandoned(self, state: RunState) -> bool:
        """A run in progress for longer than ABANDON_AFTER_MS: release its lock, plan anew."""
        if state.status is not SuggestRunStatus.RUNNING or self.clock() - state.plan_ms <= ABANDON_AFTER_MS:
            return False
        log.warning("suggestions run %d was planned %.1f h ago and never finished: planning a "
                    "new run", state.run_no, (self.clock() - state.plan_ms) / 3_600_000)
        return True

    def _full_reason(self, state: RunState | None, prev: Snapshot | None, params: str) -> str:
        """Why this run must recompute everyone ('' = incremental is exact)."""
        if self.full_requested:
            return "requested"
        if state is None or prev is None:
            return "no previous successful run"
        if prev.params != params:
            return "settings changed"
        if state.runs_since_full + 1 >= self.settings.job_suggestion_full_every:
            return "JOB_SUGGESTION_FULL_EVERY"
        return ""

    async def _plan(self, state: RunState | None) -> RunState | None:
        """Take the run lock with a new token and store the plan; None when another run holds it."""
        token = new_run_token()
        if not await self.store.take_run_lock(token):
            return None
        planned = asyncio.Event()
        keeper = asyncio.create_task(self._keep_run_lock(token, planned))  # planning may be slow
        try:
            return await self._store_plan(state, token)
        except BaseException:
            await self.store.release_run_lock(token)  # let the next attempt plan at once
            raise
        finally:
            planned.set()  # not cancelled: a Redis command cut off mid-reply costs its connection
            await asyncio.gather(keeper, return_exceptions=True)

    async def _keep_run_lock(self, token: str, done: asyncio.Event) -> None:
        """Extend the run lock every third of its TTL until `done` or no longer ours."""
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), self.store.lock_ttl_ms / 3000)
            if done.is_set() or not await self.store.extend_run_lock(token):
                return  # lost: start_run's own check then fails the plan with LockLost

    async def _store_plan(self, state: RunState | None, token: str) -> RunState:
        """Compute what the run must do and store it under the run lock `token`."""
        s = self.settings
        now_ms = self.clock()
        users = await queries.active_users_by_activity(self.ch, now_ms, s.job_suggestion_active_days)
        seen = Snapshot(await queries.follow_fingerprints(self.ch), frozenset(users),
                        run_params(s.job_suggestions_per_user, s.job_suggestion_degree_cap,
                                   s.job_suggestion_fallback),
                        await queries.block_fingerprints(self.ch))
        why, recompute = await self._changes(state, seen)
        shards = split_shards(users, s.job_suggestion_shards)
        run = RunState(token, (state.run_no if state else 0) + 1, SuggestRunStatus.RUNNING,
                       "full" if why else "incremental", now_ms, len(shards), len(users),
                       0 if why or state is None else state.runs_since_full + 1)
        await self.store.start_run(run, [encode_shard(sh, recompute) for sh in shards],
                                   encode_snapshot(seen),
                                   track_short=s.job_suggestion_fallback == "popular")
        log.info("suggestions run %d planned: %s%s, %d active users, %d to recompute, %d shards",
                 run.run_no, run.mode, f" ({why})" if why else "", len(users), len(recompute),
                 len(shards))
        return run

    async def _changes(self, state: RunState | None, seen: Snapshot) -> tuple[str, set[int]]:
        """Why the run is full ('' = incremental), and the active users to recompute."""
        raw = await self.store.snapshot()
        prev = decode_snapshot(raw) if raw is not None else None
        why = self._full_reason(state, prev, seen.params)
        short: set[int] | None = set()
        if not why and self.settings.job_suggestion_fallback == "popular":
            short = await self.store.short_users()  # their top-up follows the popular order
            why = "" if short is not None else "topped-up users of the last run unknown"
        if why or prev is None or short is None:
            return why or "no previous successful run", set(seen.active)
        changed = changed_accounts(prev.fingerprints, seen.fingerprints)
        if len(changed) > max(MIN_CHANGED_FOR_FULL, len(seen.fingerprints) * MAX_CHANGED_SHARE):
            return "most follows changed", set(seen.active)
        followers = await queries.followers_of(self.ch, sorted(changed))
        also = changed_accounts(prev.blocks, seen.blocks) | short
        return "", recompute_set(seen.active, prev, changed, followers, also)

    async def _work(self, run: RunState) -> Tally:
        """Claim and finish shards in priority order (shard 0 = most active users)."""
        tally = Tally()
        done = await self.store.done_shards(run)
        for shard in range(run.shards):
            if shard in done:
                continue
            claim = await self.store.claim(run, shard, self.owner)
            if claim is None:
                continue
            result = 0
            try:
                # Finished by another replica between our read and our claim: not ours to redo.
                if shard in await self.store.done_shards(run):
                    continue
                await self._do_shard(run, shard, claim, tally)
                result = await self.store.finish_shard(run, shard, self.clock())
            finally:
                await self.store.release(run, shard, claim)
            if result < 0:
                raise LockLost(f"suggestions run {run.run_no} is no longer current")
            tally.shards += 1
            tally.committed = tally.committed or result == 1
        return tally

    async def _do_shard(self, run: RunState, shard: int, claim: str, tally: Tally) -> None:
        """Renew the shard's unchanged keys, then recompute the rest in blocks (one query per
        block; the next block's query runs while this one is written)."""
        raw = await self.store.plan(run, shard)
        if raw is None:
            raise LockLost(f"suggestions run {run.run_no}: plan of shard {shard} is gone")
        compute = await self._renew(run, shard, claim, decode_shard(raw), tally)
        block = self.settings.job_suggestion_block_users
        in_flight: list[tuple[asyncio.Task[Computed], list[int]]] = []  # the block written, the next
        try:
            for start in range(0, len(compute), block):
                users = compute[start : start + block]
                in_flight.append((asyncio.create_task(self._query(run, users)), users))
                if len(in_flight) == 2:
                    await self._write(run, shard, claim, *in_flight[0])
                    in_flight.pop(0)
                tally.recomputed += len(users)
                self._check_deadline(run, len(users), tally)
            if in_flight:
                await self._write(run, shard, claim, *in_flight.pop())
        finally:  # a write that failed: no prefetched query may outlive the shard
            for task, _ in in_flight:
                task.cancel()
            await asyncio.gather(*(task for task, _ in in_flight), return_exceptions=True)

    async def _renew(
        self, run: RunState, shard: int, claim: str, part: list[tuple[int, bool]], tally: Tally
    ) -> list[int]:
        """Renew unchanged keys batch by batch; the users to recompute (a missing key is one)."""
        ttl_ms, size = self.settings.suggestions_ttl_s * 1000, self.settings.job_suggestion_batch_size
        compute = [u for u, again in part if again]
        renew = [u for u, again in part if not again]
        for i in range(0, len(renew), size):
            await self.store.fence(run, shard, claim)
            missing = await self.store.renew(renew[i : i + size], ttl_ms)
            done = min(size, len(renew) - i)
            tally.renewed += done - len(missing)
            compute.extend(missing)
            self._check_deadline(run, done - len(missing), tally)
        return compute

    async def _query(self, run: RunState, users: list[int]) -> Computed:
        """One block's lists, and the users among them topped up from the popular accounts."""
        s = self.settings
        ranked = await queries.suggestions(self.ch, users, s.job_suggestions_per_user,
                                           s.job_suggestion_degree_cap)
        if s.job_suggestion_fallback != "popular":
            return ranked, []
        per_user = s.job_suggestions_per_user
        short = [u for u in users if len(ranked[u]) < per_user]
        if not short:
            return ranked, []
        excluded = await queries.excluded_accounts(self.ch, short)
        # Enough of the popular order that no user can run past it while accounts remain.
        needed = max(per_user + len(excluded[u]) + len(ranked[u]) + 1 for u in short)
        popular = await self.popular.prefix(run.token, needed)
        for u in short:
            ranked[u] = top_up(u, ranked[u], popular, excluded[u], per_user)
        return ranked, short

    async def _write(
        self, run: RunState, shard: int, claim: str,
        task: asyncio.Task[Computed], users: list[int],
    ) -> None:
        """Write one block's lists: a fence check, then one pipeline per batch; then record the
        topped-up users (the next incremental run recomputes them)."""
        ranked, short = await task
        ttl_ms, size = self.settings.suggestions_ttl_s * 1000, self.settings.job_suggestion_batch_size
        for i in range(0, len(users), size):
            await self.store.fence(run, shard, claim)
            await self.store.write({u: ranked[u] for u in users[i : i + size]}, ttl_ms)
        await self.store.mark_short(run, short)

    def _check_deadline(self, run: RunState, users: int, tally: Tally) -> None:
        """Past the interval, keys of the last run start to expire: count and say so once."""
        late_ms = self.clock() - run.plan_ms - self.settings.job_suggestion_interval_sec * 1000
        if late_ms <= 0:
            return
        tally.stale += users
        if self._warned_token != run.token:
            self._warned_token = run.token
            log.warning("suggestions run %d is %.0f s past its interval with users still to "
                        "refresh: keys of active users are about to expire unrefreshed "
                        "(add replicas or raise JOB_SUGGESTION_INTERVAL_SEC)",
                        run.run_no, late_ms / 1000)

    def _count_run(self, state: RunState, tally: Tally) -> None:
        """One run counts once, by the replica that commits it; duration from its plan."""
        SUGGESTION_SHARDS.inc(tally.shards)
        if tally.committed:
            JOB_RUNS.labels(job=self.name, status="success").inc()
            JOB_DURATION.labels(job=self.name).observe(max(0, self.clock() - state.plan_ms) / 1000)
            JOB_LAST_SUCCESS.labels(job=self.name).set(self.clock() / 1000)

    @staticmethod
    def _count(tally: Tally) -> None:
        SUGGESTION_USERS.labels(outcome="recomputed").inc(tally.recomputed)
        SUGGESTION_USERS.labels(outcome="renewed").inc(tally.renewed)
        SUGGESTION_USERS.labels(outcome="stale").inc(tally.stale)
