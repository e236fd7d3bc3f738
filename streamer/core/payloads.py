"""Redis key names and the JSON encoding of every cached value, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.core.scoring import PostCounts
from streamer.core.suggest import Suggestion
from streamer.core.window import Window

KEY_PREFIX = "nova:cache"  # public keys (fixed by the contract)
INTERNAL_PREFIX = "nova:streamer"  # keys of one deployment, each carrying STREAMER_APP_ID
SUGGESTIONS_PREFIX = f"{KEY_PREFIX}:suggested_users"

# Redis Cluster places a key by its hash tag, the text between the first "{" and the next
# "}". Every internal key of a deployment is tagged with the app id, so one deployment's
# partials and requests share a slot (MGET and transactions over them work in a Cluster).
# Locks and fence counters are tagged with the public key they guard, so a script can check
# the lock and write that key in one step.


def trending_key(window_hours: int) -> str:
    """`nova:cache:trending:{hours}h`."""
    return f"{KEY_PREFIX}:trending:{window_hours}h"


def trending_meta_key(window_hours: int) -> str:
    """The meta key written beside the trending value."""
    return trending_key(window_hours) + ":meta"


def reconcile_key(window_hours: int) -> str:
    """Where the latest reconcile report is written."""
    return trending_key(window_hours) + ":reconcile"


def suggestions_key(user_id: int) -> str:
    """`nova:cache:suggested_users:{user_id}`."""
    return f"{SUGGESTIONS_PREFIX}:{user_id}"


def suggestions_key_pattern() -> str:
    """SCAN pattern matching every suggestions key."""
    return f"{SUGGESTIONS_PREFIX}:*"


# Suggestions runs shared by replicas. Every key carries the hash tag {suggested_users}, so on
# a Cluster they share one slot and the run lock, claims and run state can be checked together
# in one script. The run lock and the shard claims guard the public keys
# (nova:cache:suggested_users:*) and are keyed by that key space, not by the deployment; run
# state, snapshots and plans belong to one deployment: they live under its internal prefix
# (not among the public caches) and carry its STREAMER_APP_ID.
_SUGGEST_TAG = "{suggested_users}"


def suggestions_run_lock_key() -> str:
    """Held by the run that currently writes the suggestions keys (one deployment at a time)."""
    return f"{KEY_PREFIX}:lock:{_SUGGEST_TAG}"


def suggestions_claim_key(run_token: str, shard: int) -> str:
    """A replica's claim on one shard of one run."""
    return f"{KEY_PREFIX}:lock:{_SUGGEST_TAG}:run:{run_token}:shard:{shard}"


def suggestions_state_key(app_id: str) -> str:
    """Hash: the current or last run of this deployment (id, token, status, counters)."""
    return f"{INTERNAL_PREFIX}:{_SUGGEST_TAG}:{app_id}:state"


def suggestions_snapshot_key(app_id: str, run_token: str = "") -> str:
    """What the last successful run saw; with a token, what a run in progress saw."""
    suffix = f":run:{run_token}" if run_token else ""
    return f"{INTERNAL_PREFIX}:{_SUGGEST_TAG}:{app_id}{suffix}:snapshot"


def suggestions_short_key(app_id: str, run_token: str = "") -> str:
    """Set of the users whose list the last successful run topped up with popular accounts
    (JOB_SUGGESTION_FALLBACK=popular); with a token, the set a run in progress is filling."""
    suffix = f":run:{run_token}" if run_token else ""
    return f"{INTERNAL_PREFIX}:{_SUGGEST_TAG}:{app_id}{suffix}:short"


def suggestions_plan_key(app_id: str, run_token: str, shard: int) -> str:
    """The users of one shard of a run, with their recompute/renew flags."""
    return f"{INTERNAL_PREFIX}:{_SUGGEST_TAG}:{app_id}:run:{run_token}:plan:{shard}"


def suggestions_done_key(app_id: str, run_token: str) -> str:
    """Set of the shards of a run that are finished."""
    return f"{INTERNAL_PREFIX}:{_SUGGEST_TAG}:{app_id}:run:{run_token}:done"


# ---- locks and fencing (shared by every deployment that writes the same public key) ----
def lock_key(job: str) -> str:
    """Redis key of the one-writer lock of a job that names no guarded key."""
    return f"{KEY_PREFIX}:lock:{job}"


def guard_lock_key(guarded: str, role: str) -> str:
    """A lock guarding the public key `guarded`; `role` tells its holders apart (merge, standby)."""
    return f"{{{guarded}}}:lock:{role}"


def trending_lock_key(window_hours: int, role: str) -> str:
    """A lock guarding the trending key (same Cluster slot as the trending value)."""
    return guard_lock_key(trending_key(window_hours), role)


def fence_counter_key(lock: str) -> str:
    """Counter handing out fencing numbers; shares the lock's slot (and all its sibling locks)."""
    return f"{{{hash_tag(lock)}}}:fence"


def slot_fence_key(lock: str, slot_tag: str) -> str:
    """Newest fencing number written to one Cluster slot for the keys a lock guards."""
    return f"{{{slot_tag}}}:fence:{hash_tag(lock)}"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes for a key: its {tag} if it has a non-empty one, else the key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1:end]
    return key


# ---- internal keys of one deployment ---------------------------------------------------
def _internal(app_id: str, rest: str) -> str:
    return f"{INTERNAL_PREFIX}:{{{app_id}}}:{rest}"


def partial_key(app_id: str, window_hours: int, partition: int) -> str:
    """One partition's answer to the current merge request."""
    return _internal(app_id, f"partial:{window_hours}h:{partition}")


def merge_request_key(app_id: str, window_hours: int) -> str:
    """The merger's current request: the window it merges, named from its clock."""
    return _internal(app_id, f"merge-request:{window_hours}h")


def reconcile_request_key(app_id: str, window_hours: int) -> str:
    """The merger's open reconcile request (a complete-minute window)."""
    return _internal(app_id, f"reconcile-request:{window_hours}h")


def complete_snapshot_key(app_id: str, window_hours: int, partition: int) -> str:
    """One partition's answer to the open reconcile request."""
    return _internal(app_id, f"complete:{window_hours}h:{partition}")


def sink_positions_key(app_id: str, engine: str | None = None) -> str:
    """Hash: partition -> next offset the ClickHouse sink has written and committed (into one
    embedded engine when `engine` names it: each has its own sink group)."""
    return _internal(app_id, "sink:positions" if engine is None else f"sink:positions:{engine}")


def encode_trending(posts: Sequence[PostCounts]) -> bytes:
    """The trending array, in rank order."""
    return orjson.dumps([p.to_payload() for p in posts])


def decode_trending(raw: bytes | str) -> list[PostCounts]:
    """Parse a trending array."""
    return [PostCounts.from_payload(o) for o in orjson.loads(raw)]


@dataclass(frozen=True, slots=True)
class TrendingMeta:
    """What the meta key says about a trending value."""

    generated_at_ms: int
    window: Window
    mode: str  # "stream" | "clickhouse"
    partitions: Sequence[int]
    missing_partitions: Sequence[int] = ()
    extra: dict[str, Any] | None = None
    ttl_ms: int | None = None  # the TTL the writer gave value and meta (set when publishing)
    count: str = "events"  # JOB_TRENDING_COUNT that made the list: "events" | "people"
    min_people: int = 1  # JOB_TRENDING_MIN_PEOPLE that made the list

    def to_payload(self) -> dict[str, Any]:
        """JSON object for the meta key."""
        out: dict[str, Any] = {
            "generated_at_ms": self.generated_at_ms,
            "window_start_ms": self.window.start_ms,
            "window_end_ms": self.window.end_ms,
            "mode": self.mode,
            "partitions": sorted(self.partitions),
            "missing_partitions": sorted(self.missing_partitions),
            "complete": not self.missing_partitions,
            "count": self.count,
            "min_people": self.min_people,
        }
        if self.ttl_ms is not None:
            out["ttl_ms"] = self.ttl_ms
        if self.extra:
            out.update(self.extra)
        return out


def encode_meta(meta: TrendingMeta) -> bytes:
    """The meta JSON."""
    return orjson.dumps(meta.to_payload())


def encode_suggestions(items: Sequence[Suggestion]) -> bytes:
    """The suggestions array."""
    return orjson.dumps([s.to_payload() for s in items])
