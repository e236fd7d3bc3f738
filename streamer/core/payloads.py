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
