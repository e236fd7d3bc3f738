"""The end of a demo run: did the published list match, and what happened, in sentences."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis
from rich.console import RenderableType
from rich.table import Table

from streamer.core.payloads import suggestions_key, suggestions_key_pattern
from streamer.core.scoring import PostCounts
from streamer.demo.dashboard import (
    DemoState,
    fmt_time_ms,
    pipeline_rows,
    publish_line,
    reconcile_line,
)
from streamer.demo.poll import Metrics, Snapshot
from streamer.demo.traffic import TrafficRecord


@dataclass
class Verdict:
    """Whether a published trending list equals the recomputation from the produced events."""

    ok: bool
    detail: str
    snapshot: Snapshot | None = None
    expected: list[PostCounts] = field(default_factory=list)

    @classmethod
    def of(cls, snap: Snapshot, expected: list[PostCounts]) -> Verdict:
        """Compare entry by entry: post id, order and all four counters."""
        actual = snap.trending or []
        meta = snap.meta or {}
        when = (f"window {fmt_time_ms(meta.get('window_start_ms', 0))}–"
                f"{fmt_time_ms(meta.get('window_end_ms', 0))} UTC, published "
                f"{fmt_time_ms(meta.get('generated_at_ms', 0))} UTC")
        if not expected:
            return cls(False, f"nothing to compare: no produced event falls in the {when}", snap)
        if actual == expected:
            return cls(True, f"all {len(actual)} published entries equal the list recomputed from "
                             f"the produced events: post ids, order and the four counters ({when})",
                       snap, expected)
        for i, (a, e) in enumerate(zip(actual, expected, strict=False)):
            if a != e:
                return cls(False, f"rank {i + 1}: published {a}, recomputed {e} ({when})", snap,
                           expected)
        return cls(False, f"published {len(actual)} entries, recomputed {len(expected)} ({when})",
                   snap, expected)


async def sample_suggestions(
    redis: Redis, users: list[int], want: int = 3
) -> tuple[int, dict[int, list[dict[str, Any]]]]:
    """How many suggestion keys exist, and the lists of the first few active users that have one."""
    count = 0
    async for _ in redis.scan_iter(match=suggestions_key_pattern(), count=1000):
        count += 1
    sample: dict[int, list[dict[str, Any]]] = {}
    for user in users:
        raw = await redis.get(suggestions_key(user))
        if raw is not None and (items := orjson.loads(raw)):
            sample[user] = items
            if len(sample) >= want:
                break
    return count, sample


@dataclass
class Summary:
    """What the final summary reports (plain data, filled in by the runner)."""

    counters: dict[str, int]
    duration_s: float
    final: Snapshot | None
    verdict: Verdict | None
    suggestion_keys: int
    suggestions: dict[int, list[dict[str, Any]]]
    interrupted: str
    data_dir: str
    kept_data: bool


def summary_lines(s: Summary, state: DemoState) -> list[str]:
    """The summary as sentences, for every kind of output."""
    c = s.counters
    m = s.final.metrics if s.final and s.final.metrics else Metrics()
    batches = c["messages_batch"] + c["messages_mixed_batch"]
    out = ["", "Summary",
           f"  produced: {c['valid_events'] + c['duplicates_sent'] + c['dead_letters_expected']:,} "
           f"events in {c['messages']:,} Kafka messages over {s.duration_s:.0f} s "
           f"({batches:,} of them JSON-array batches)",
           f"    {c['valid_events']:,} unique valid events ({c['late_events']:,} of them late: older "
           f"than the window), {c['duplicates_sent']:,} re-sent duplicates, "
           f"{c['dead_letters_expected']:,} malformed, "
           f"{c['messages_misrouted'] + c['messages_mixed_batch']:,} messages in the wrong partition",
           f"  worker: counted {int(m.total('streamer_events_processed_total')):,} events; ignored "
           f"{int(m.total('streamer_events_duplicate_total')):,} duplicates and "
           f"{int(m.total('streamer_events_late_total')):,} late events",
           f"    sent {int(m.total('streamer_events_invalid_total')):,} dead letters to the DLQ, "
           f"re-keyed {int(m.total('streamer_events_forwarded_total')):,} events to their post's "
           "partition",
           f"  trending publishes: {pipeline_dict(state)['publishes']}; last: {publish_line(state)}",
           f"  reconcile vs ClickHouse: {reconcile_line(state)}"]
    if s.verdict is None:
        why = "the demo was stopped early" if s.interrupted else "a step failed, see above"
        out.append(f"  trending verified against recomputation: SKIPPED ({why})")
    else:
        word = "OK" if s.verdict.ok else "MISMATCH"
        out.append(f"  trending verified against recomputation: {word}")
        out.append(f"    {s.verdict.detail}")
    out.append(f"  suggested users: {s.suggestion_keys:,} users have a list in Redis "
               "(nova:cache:suggested_users:{id})")
    for user, items in s.suggestions.items():
        shown = ", ".join(f"{i['user_id']} (score {i['score']:.2f}, {i['mutual_count']} mutual)"
                          for i in items[:3])
        out.append(f"    user {user} → {shown}{', …' if len(items) > 3 else ''}")
    kept = "kept for inspection" if s.kept_data else "removed on exit"
    out.append(f"  files: {s.data_dir} (logs of every process, embedded ClickHouse; {kept})")
    return out


def pipeline_dict(state: DemoState) -> dict[str, str]:
    """pipeline_rows as a dict."""
    return dict(pipeline_rows(state))


def final_table(verdict: Verdict | None, state: DemoState) -> tuple[RenderableType, list[str]]:
    """The last published top 10, as a rich table and as plain lines."""
    snap = verdict.snapshot if verdict and verdict.snapshot else state.last
    posts = (snap.trending if snap else None) or []
    table = Table(title="Final trending top 10 (from Redis)")
    for col in ("#", "post", "score", "views", "likes", "comments", "shares"):
        table.add_column(col, justify="right")
    plain = ["", "Final trending top 10 (from Redis): rank post score views likes comments shares"]
    for i, p in enumerate(posts[:10], 1):
        row = (str(i), str(p.post_id), f"{p.score:,.1f}", f"{p.views:,}", f"{p.likes:,}",
               f"{p.comments:,}", f"{p.shares:,}")
        table.add_row(*row)
        plain.append("  " + " ".join(row))
    return table, plain


def write_report(
    path: Path, code: int, s: Summary, record: TrafficRecord, topk: int, seed: int,
    extra: dict[str, Any] | None = None,
) -> None:
    """The compared trending value + meta, the produced events and the counters, as JSON."""
    verdict = s.verdict
    snap = verdict.snapshot if verdict and verdict.snapshot else s.final
    report = {
        "exit_code": code,
        "verified": bool(verdict and verdict.ok),
        "verdict": verdict.detail if verdict else "skipped",
        "interrupted": s.interrupted,
        "trending": orjson.loads(snap.trending_raw) if snap and snap.trending_raw else None,
        "meta": snap.meta if snap else None,
        "expected": [p.to_payload() for p in verdict.expected] if verdict else [],
        "topk": topk,
        "metrics": snap.metrics.samples if snap and snap.metrics else {},
        "suggestion_keys": s.suggestion_keys,
        "suggestions": {str(k): v for k, v in s.suggestions.items()},
        "produced": record.to_json(),
        "data_dir": s.data_dir,
        "seed": seed,
        **(extra or {}),
    }
    path.write_bytes(orjson.dumps(report))
