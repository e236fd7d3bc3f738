"""Redis key names and the JSON encoding of every cached value, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from streamer.core.scoring import PostCounts
from streamer.core.suggest import Suggestion
from streamer.core.window import Window

KEY_PREFIX = "nova:cache"


def trending_key(window_hours: int) -> str:
    """`nova:cache:trending:{hours}h`."""
    return f"{KEY_PREFIX}:trending:{window_hours}h"


def trending_meta_key(window_hours: int) -> str:
    """The meta key written beside the trending value."""
    return trending_key(window_hours) + ":meta"


def reconcile_key(window_hours: int) -> str:
    """Where the latest reconcile report is written."""
    return trending_key(window_hours) + ":reconcile"


def sink_positions_key() -> str:
    """Hash: partition -> next offset the ClickHouse sink has written and committed."""
    return f"{KEY_PREFIX}:sink:positions"


def suggestions_key(user_id: int) -> str:
    """`nova:cache:suggested_users:{user_id}`."""
    return f"{KEY_PREFIX}:suggested_users:{user_id}"


# Suggestions runs shared by replicas. Every key carries the hash tag {suggested_users}, so on
# a Cluster they share one slot and the run lock, claims and run state can be checked together
# in one script. The run lock and the shard claims guard the public keys
# (nova:cache:suggested_users:*) and are keyed by that key space, not by the deployment; run
# state and plans belong to one deployment and carry its STREAMER_APP_ID.
_SUGGEST_TAG = "{suggested_users}"


def suggestions_run_lock_key() -> str:
    """Held by the run that currently writes the suggestions keys (one deployment at a time)."""
    return f"{KEY_PREFIX}:lock:{_SUGGEST_TAG}"


def suggestions_claim_key(run_token: str, shard: int) -> str:
    """A replica's claim on one shard of one run."""
    return f"{KEY_PREFIX}:lock:{_SUGGEST_TAG}:run:{run_token}:shard:{shard}"


def suggestions_state_key(app_id: str) -> str:
    """Hash: the current or last run of this deployment (id, token, status, counters)."""
    return f"{KEY_PREFIX}:{_SUGGEST_TAG}:{app_id}:state"


def suggestions_snapshot_key(app_id: str, run_token: str = "") -> str:
    """What the last successful run saw; with a token, what a run in progress saw."""
    suffix = f":run:{run_token}" if run_token else ""
    return f"{KEY_PREFIX}:{_SUGGEST_TAG}:{app_id}{suffix}:snapshot"


def suggestions_plan_key(app_id: str, run_token: str, shard: int) -> str:
    """The users of one shard of a run, with their recompute/renew flags."""
    return f"{KEY_PREFIX}:{_SUGGEST_TAG}:{app_id}:run:{run_token}:plan:{shard}"


def suggestions_done_key(app_id: str, run_token: str) -> str:
    """Set of the shards of a run that are finished."""
    return f"{KEY_PREFIX}:{_SUGGEST_TAG}:{app_id}:run:{run_token}:done"


def lock_key(job: str) -> str:
    """Redis key of the one-writer lock of a job."""
    return f"{KEY_PREFIX}:lock:{job}"


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
        }
        if self.extra:
            out.update(self.extra)
        return out


def encode_meta(meta: TrendingMeta) -> bytes:
    """The meta JSON."""
    return orjson.dumps(meta.to_payload())


def encode_suggestions(items: Sequence[Suggestion]) -> bytes:
    """The suggestions array."""
    return orjson.dumps([s.to_payload() for s in items])
