"""Redis side of a suggestions run: run lock, shard claims, plans, fenced batch writes.

Cluster-safe by construction: the run lock, the claims and the run state share the hash tag
{suggested_users} (one slot), so the scripts that check them together touch one slot only;
the public keys of a batch are written by one non-transactional pipeline per batch, after a
fence check. What the fence guarantees: a batch is sent only while this replica's claim and
the run lock were both still held at the check. A replica that stalls between the check and
the send (longer than the claim TTL) can still land one batch after a takeover; that batch
holds values computed from data no older than the run's plan, so it is never a wrong list
for that data, at worst one run older than the takeover's.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from redis.asyncio import Redis

from streamer.core.payloads import (
    encode_suggestions,
    suggestions_claim_key,
    suggestions_done_key,
    suggestions_key,
    suggestions_plan_key,
    suggestions_run_lock_key,
    suggestions_short_key,
    suggestions_snapshot_key,
    suggestions_state_key,
)
from streamer.core.suggest import Suggestion
from streamer.errors import LockLost

# KEYS: claim, run lock. ARGV: claim token, run token, ttl ms. Both ours -> extend both.
_FENCE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] or redis.call('get', KEYS[2]) ~= ARGV[2] then
  return 0
end
redis.call('pexpire', KEYS[1], ARGV[3])
redis.call('pexpire', KEYS[2], ARGV[3])
return 1
"""
# KEYS: run lock, state, done set, pending snapshot, snapshot, pending short set, short set.
# ARGV: run token, shard, shards, now ms. Marks a shard done; the last one commits the run.
_DONE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('hget', KEYS[2], 'token') ~= ARGV[1] then return -1 end
redis.call('sadd', KEYS[3], ARGV[2])
redis.call('pexpire', KEYS[3], 86400000)
if redis.call('scard', KEYS[3]) < tonumber(ARGV[3]) then return 0 end
if redis.call('exists', KEYS[4]) == 1 then redis.call('rename', KEYS[4], KEYS[5]) end
redis.call('persist', KEYS[5])
if redis.call('exists', KEYS[6]) == 1 then
  redis.call('rename', KEYS[6], KEYS[7])
  redis.call('persist', KEYS[7])
else
  redis.call('del', KEYS[7])
end
redis.call('hset', KEYS[2], 'status', 'done', 'finished_ms', ARGV[4])
redis.call('del', KEYS[1])
return 1
"""
# KEYS: run lock, state. ARGV: run token, then field/value pairs. Written only by the lock holder.
_SET_STATE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('del', KEYS[2])
redis.call('hset', KEYS[2], unpack(ARGV, 2))
return 1
"""
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
_EXTEND = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], "
           "ARGV[2]) end return 0")
PLAN_TTL_MS = 86_400_000
# Member of every short set, so an empty set still exists (a missing one means "not recorded").
_SHORT_SENTINEL = "-"


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _bytes(raw: bytes | str | None) -> bytes | None:
    return raw.encode() if isinstance(raw, str) else raw


class SuggestRunStatus(StrEnum):
    """Where a suggestions run stands (the state hash's `status`; _DONE's Lua writes DONE)."""

    RUNNING = "running"  # planned: replicas claim and work its shards
    DONE = "done"  # every shard finished: its snapshot is the next run's baseline


@dataclass(frozen=True, slots=True)
class RunState:
    """The current or last run of a deployment, as stored in its state hash."""

    token: str
    run_no: int
    status: SuggestRunStatus
    mode: str  # full | incremental
    plan_ms: int
    shards: int
    users: int
    runs_since_full: int

    @classmethod
    def from_hash(cls, raw: Mapping[bytes | str, bytes | str]) -> RunState | None:
        """Parse the state hash; None when there is no record."""
        if not raw:
            return None
        v = {_text(k): _text(b) for k, b in raw.items()}
        return cls(v["token"], int(v["run_no"]), SuggestRunStatus(v["status"]), v["mode"], int(v["plan_ms"]),
                   int(v["shards"]), int(v["users"]), int(v["runs_since_full"]))

    def to_fields(self) -> list[str]:
        """Field/value pairs for HSET."""
        pairs = {"token": self.token, "run_no": self.run_no, "status": self.status,
                 "mode": self.mode, "plan_ms": self.plan_ms, "shards": self.shards,
                 "users": self.users, "runs_since_full": self.runs_since_full}
        return [str(x) for kv in pairs.items() for x in kv]


def new_run_token() -> str:
    """Random id of one run (also the run lock's value)."""
    return secrets.token_hex(10)


class RunStore:
    """All Redis reads and writes of suggestions runs for one deployment."""

    def __init__(self, redis: Redis, app_id: str, lock_ttl_ms: int = 30_000) -> None:
        self.redis = redis
        self.app_id = app_id
        self.lock_ttl_ms = lock_ttl_ms
        self.state_key = suggestions_state_key(app_id)
        self.lock_key = suggestions_run_lock_key()

    async def state(self) -> RunState | None:
        """The deployment's run record."""
        return RunState.from_hash(await self.redis.hgetall(self.state_key))

    async def lock_holder(self) -> str | None:
        """Token of the run that holds the suggestions keys now."""
        raw = await self.redis.get(self.lock_key)
        return None if raw is None else _text(raw)

    async def take_run_lock(self, token: str) -> bool:
        """Start (or resume) owning the public keys for run `token`."""
        if await self.redis.set(self.lock_key, token, nx=True, px=self.lock_ttl_ms):
            return True
        return await self.lock_holder() == token

    async def extend_run_lock(self, token: str) -> bool:
        """Keep the run lock for `token` another lock_ttl_ms; False when it is no longer ours."""
        return bool(await self.redis.eval(_EXTEND, 1, self.lock_key, token, self.lock_ttl_ms))

    async def release_run_lock(self, token: str) -> None:
        """Drop the run lock if `token` holds it."""
        await self.redis.eval(_RELEASE, 1, self.lock_key, token)

    async def snapshot(self) -> bytes | None:
        """The encoded snapshot of the last successful run."""
        return _bytes(await self.redis.get(suggestions_snapshot_key(self.app_id)))

    async def start_run(
        self, run: RunState, plans: Sequence[bytes], snapshot: bytes, track_short: bool = False
    ) -> None:
        """Store the shard plans and the pending snapshot (and an empty short set when the run
        records topped-up users), then the state (fenced by the lock)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for i, plan in enumerate(plans):
                pipe.set(suggestions_plan_key(self.app_id, run.token, i), plan, px=PLAN_TTL_MS)
            pipe.set(suggestions_snapshot_key(self.app_id, run.token), snapshot, px=PLAN_TTL_MS)
            if track_short:
                short = suggestions_short_key(self.app_id, run.token)
                pipe.delete(short)
                pipe.sadd(short, _SHORT_SENTINEL)
                pipe.pexpire(short, PLAN_TTL_MS)
            await pipe.execute()
        if not await self.redis.eval(_SET_STATE, 2, self.lock_key, self.state_key, run.token,
                                     *run.to_fields()):
            raise LockLost("suggestions run lock lost while planning")

    async def short_users(self) -> set[int] | None:
        """Users the last successful run topped up; None when it did not record them."""
        members = await self.redis.smembers(suggestions_short_key(self.app_id))
        if not members:
            return None
        return {int(m) for m in (_text(x) for x in members) if m != _SHORT_SENTINEL}

    async def mark_short(self, run: RunState, users: Sequence[int]) -> None:
        """Record users of this run whose list was topped up from the popular accounts."""
        if users:
            await self.redis.sadd(suggestions_short_key(self.app_id, run.token), *users)

    async def plan(self, run: RunState, shard: int) -> bytes | None:
        """One shard's plan."""
        return _bytes(await self.redis.get(suggestions_plan_key(self.app_id, run.token, shard)))

    async def done_shards(self, run: RunState) -> set[int]:
        """Shards of the run already finished."""
        members = await self.redis.smembers(suggestions_done_key(self.app_id, run.token))
        return {int(m) for m in members}

    async def claim(self, run: RunState, shard: int, owner: str) -> str | None:
        """Claim a shard for this replica; the claim token, or None when someone has it."""
        token = f"{run.token}:{shard}:{owner}:{secrets.token_hex(6)}"
        key = suggestions_claim_key(run.token, shard)
        ok = await self.redis.set(key, token, nx=True, px=self.lock_ttl_ms)
        return token if ok else None

    async def fence(self, run: RunState, shard: int, claim: str) -> None:
        """Raise LockLost unless our claim and the run lock still hold; extend both."""
        key = suggestions_claim_key(run.token, shard)
        ok = await self.redis.eval(_FENCE, 2, key, self.lock_key, claim, run.token,
                                   self.lock_ttl_ms)
        if not ok:
            raise LockLost(f"suggestions shard {shard} claim or run lock lost; not writing")

    async def release(self, run: RunState, shard: int, claim: str) -> None:
        """Drop our claim (if still ours)."""
        key = suggestions_claim_key(run.token, shard)
        await self.redis.eval(_RELEASE, 1, key, claim)

    async def finish_shard(self, run: RunState, shard: int, now_ms: int) -> int:
        """Mark a shard done: 1 = that completed the run, 0 = more to do, -1 = run not ours."""
        keys = (self.lock_key, self.state_key, suggestions_done_key(self.app_id, run.token),
                suggestions_snapshot_key(self.app_id, run.token),
                suggestions_snapshot_key(self.app_id),
                suggestions_short_key(self.app_id, run.token), suggestions_short_key(self.app_id))
        return int(await self.redis.eval(_DONE, len(keys), *keys, run.token, shard, run.shards,
                                         now_ms))

    async def write(self, values: Mapping[int, Sequence[Suggestion]], ttl_ms: int) -> None:
        """SET one batch of users' lists with their TTL: one pipeline, no transaction."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user, items in values.items():
                pipe.set(suggestions_key(user), encode_suggestions(items), px=ttl_ms)
            await pipe.execute()

    async def renew(self, users: Sequence[int], ttl_ms: int) -> list[int]:
        """PEXPIRE one batch of keys; the users whose key is missing (must be recomputed)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.pexpire(suggestions_key(user), ttl_ms)
            found = await pipe.execute()
        return [u for u, ok in zip(users, found, strict=True) if not ok]
