"""Pure publishing-source policies: what the stream merger publishes each tick, when a
standby takes over (`trending.standby`), and how old a publish may be before it is stale."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class PublishSource(Enum):
    """What the stream merger should publish this tick."""

    STREAM = "stream"  # the complete merge
    CLICKHOUSE = "clickhouse"  # queries.trending over window_at(now), meta mode "clickhouse"
    SKIP = "skip"  # publish nothing now; the current key outlives the next attempt


def merger_source(
    *,
    now_ms: int,
    merge_complete: bool,
    use_clickhouse: bool,
    last_complete_ms: int,
    key_ttl_left_ms: int | None,
    next_try_ms: int,
    fallback_after_ms: int,
    margin_ms: int = 5_000,
) -> PublishSource:
    """Stream merge when complete; ClickHouse on drift, after `fallback_after_ms` without a
    complete merge, or sooner if skipping would let the key expire before the next try.

    `last_complete_ms`: time of the last complete merge (the worker's start before the first);
    `key_ttl_left_ms`: PTTL of the trending key (None or <= 0 when missing)."""
    if use_clickhouse:
        return PublishSource.CLICKHOUSE
    if merge_complete:
        return PublishSource.STREAM
    if now_ms - last_complete_ms >= fallback_after_ms:
        return PublishSource.CLICKHOUSE
    if key_ttl_left_ms is None or key_ttl_left_ms <= (next_try_ms - now_ms) + margin_ms:
        return PublishSource.CLICKHOUSE
    return PublishSource.SKIP


TAKEOVER_FACTOR = 1.2  # standby takes over when the last publish is older than 1.2 intervals
CHECKS_PER_INTERVAL = 12  # standby reads the meta this often per publish interval


def stream_is_publishing(meta: Mapping[str, Any] | None, age_ms: int, interval_s: int) -> bool:
    """A stream publish younger than the takeover age: ClickHouse jobs in standby stay quiet
    (their own ClickHouse publishes do not count). `age_ms` as in standby_decision."""
    fresh_ms = TAKEOVER_FACTOR * interval_s * 1000
    return meta is not None and meta.get("mode") == "stream" and age_ms < fresh_ms


@dataclass(frozen=True, slots=True)
class StandbyDecision:
    """Whether a standby should publish now, and why (for the log)."""

    publish: bool
    mine: bool
    reason: str


def standby_decision(
    meta: Mapping[str, Any] | None, age_ms: int, my_token: str, interval_ms: int, check_ms: int,
    takeover_factor: float = TAKEOVER_FACTOR,
) -> StandbyDecision:
    """Publish when the meta is missing, was written longer than the takeover age ago, or is
    ours and due again. `age_ms`: time since the meta was written (TTL minus its PTTL)."""
    if meta is None:
        return StandbyDecision(True, False, "trending meta missing")
    mine = meta.get("publisher") == my_token
    mode = str(meta.get("mode", "?"))
    if mine:
        due = age_ms >= interval_ms - check_ms // 2
        return StandbyDecision(due, True, f"own publish is {age_ms / 1000:.1f}s old")
    takeover_ms = int(interval_ms * takeover_factor)
    if age_ms >= takeover_ms:
        return StandbyDecision(True, False, f"{mode} publish is {age_ms / 1000:.1f}s old "
                                            f"(takeover at {takeover_ms / 1000:g}s)")
    return StandbyDecision(False, False, f"{mode} is publishing ({age_ms / 1000:.1f}s ago)")
