"""Scenarios 5-6: a flood of bad input mixed with good events; the same batch produced three times."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.events import encode_events, validate_event
from tests.reliability_helpers import (
    record_figures,
)
from tests.stream_helpers import (
    Cluster,
    Message,
    WorkerProcess,
    keyed,
    now_ms,
    produce,
    random_events,
    read_topic,
    settle_exact,
    wait_metric,
)

pytestmark = pytest.mark.timeout(240)
MAX_ID = 2**63 - 1


def bad_event(i: int, now: int) -> tuple[bytes, str]:
    """The i-th bad message value and the reason the worker must give."""
    base: dict[str, Any] = {"event_id": f"bad-{i}", "post_id": i % 500, "user_id": 3,
                            "event_type": "view", "ts": now}
    kind = i % 12
    variants: list[tuple[Any, str]] = [
        (None, "invalid_json"), ("42", "not_an_object"), ({**base, "ts": None}, "invalid_type"),
        ({k: v for k, v in base.items() if k != "user_id"}, "missing_field"),
        ({**base, "post_id": str(i)}, "invalid_type"), ({**base, "user_id": 1.5}, "invalid_type"),
        ({**base, "ts": str(now)}, "invalid_type"), ({**base, "event_type": "dislike"}, "unknown_event_type"),
        ({**base, "event_type": 7}, "invalid_type"), ({**base, "ts": now + 600_000 + i}, "future_ts"),
        ({**base, "post_id": MAX_ID + 1}, "out_of_range"), ({**base, "event_id": ""}, "out_of_range"),
    ]
    value, reason = variants[kind]
    if value is None:
        return b'{"event_id": "bad-%d", "post_id": ' % i, reason
    return (value.encode() if isinstance(value, str) else orjson.dumps(value)), reason


def flood(good: list[dict[str, Any]], bad_messages: int, batches: int, now: int
          ) -> tuple[list[Message], Counter[str]]:
    """Good events (singles, and batches each carrying 20 bad members) interleaved with bad
    messages; the expected DLQ reasons."""
    reasons: Counter[str] = Counter()
    bad: list[Message] = []
    for i in range(bad_messages):
        value, reason = bad_event(i, now)
        reasons[reason] += 1
        bad.append((b"%d" % (i % 500), value, None))
    batched, singles = good[: batches * 100], good[batches * 100 :]
    arrays: list[Message] = []
    for b in range(batches):
        members: list[Any] = list(batched[b * 100 : (b + 1) * 100])
        for j in range(20):
            value, reason = bad_event(bad_messages + b * 20 + j, now)
            if reason in ("invalid_json", "not_an_object"):
                value, reason = orjson.dumps({"event_id": f"m{b}-{j}"}), "missing_field"
            members.insert(j * 5, orjson.loads(value))
            reasons[reason] += 1
        arrays.append((b"batch-%d" % b, orjson.dumps(members), None))
    good_msgs = keyed(singles) + arrays
    mixed: list[Message] = []
    for i in range(max(len(bad), len(good_msgs))):
        mixed.extend(m[i] for m in (good_msgs, bad) if i < len(m))
    return mixed, reasons


async def timed_ingest(w: WorkerProcess, c: Cluster, messages: list[Message], target: float) -> float:
    """Seconds from the start of producing until processed_total reaches target."""
    started = time.monotonic()
    await produce(c.bootstrap, c.topic, messages)
    await wait_metric(w, "streamer_events_processed_total", target, timeout_s=120)
    return time.monotonic() - started


def ch_counts(data_dir: Path) -> tuple[int, int]:
    """(rows, distinct event ids) in the worker's embedded post_events (read in a child process)."""
    code = (
        "import clickhouse_connect;"
        f"c=clickhouse_connect.get_client(dsn='chdb://{(data_dir / 'clickhouse').resolve()}');"
        "r=c.query('SELECT count(), uniqExact(event_id) FROM nova.post_events').result_rows[0];"
        "print(r[0], r[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rows, distinct = out.stdout.strip().splitlines()[-1].split()
    return int(rows), int(distinct)


class TestBadInputFlood:
    """Tens of thousands of bad events never cost a good one."""

    async def test_flood_goes_to_dlq_and_good_events_count(
        self, cluster: Cluster, redis_client: Redis
    ) -> None:
        """20 000 malformed, mistyped, out-of-range and future events mixed with 20 000 good ones:
        each bad one is in the DLQ with an `error` header naming its reason, each good one is
        counted exactly once; the good-event rate with and without the flood is reported."""
        w = cluster.worker("w1")
        w.wait_ready(90)
        now = now_ms()
        baseline = random_events(10_000, 800, now, seed=51)
        base_s = await timed_ingest(w, cluster, keyed(baseline), 10_000)

        good = random_events(20_000, 800, now_ms(), seed=52)
        mixed, reasons = flood(good, bad_messages=19_000, batches=50, now=now_ms())
        bad_total = sum(reasons.values())
        flood_s = await timed_ingest(w, cluster, mixed, 30_000)
        posts, want, _ = await settle_exact(redis_client, baseline + good, 4)
        assert posts == want

        dead = await read_topic(cluster.bootstrap, cluster.dlq, bad_total, timeout_s=90)
        assert len(dead) == bad_total
        headers = [dict(r.headers).get("error", b"").decode() for r in dead]
        assert all(headers), "every dead letter carries an error header"
        assert Counter(h.split(":")[0] for h in headers) == reasons
        for reason, count in reasons.items():
            assert w.metric("streamer_events_invalid_total", f'reason="{reason}"') == count
        assert w.metric("streamer_events_processed_total") == 30_000
        assert w.metric("streamer_events_duplicate_total") == 0
        record_figures("5_bad_input_flood", {
            "bad_inputs": bad_total, "bad_by_reason": dict(reasons), "good_events": 30_000,
            "good_counted": w.metric("streamer_events_processed_total"), "events_lost": 0,
            "good_rate_alone_per_s": round(10_000 / base_s),
            "good_rate_in_flood_per_s": round(20_000 / flood_s),
            "all_messages_rate_in_flood_per_s": round(len(mixed) / flood_s),
            "note": "rates include producing on the same 2 shared cores",
        })
        assert w.terminate() == 0


class TestReplays:
    """Duplicates and replays count once, also across a restart."""

    async def test_same_batch_three_times_then_after_restart(
        self, cluster: Cluster, redis_client: Redis
    ) -> None:
        """The same 4 000 events (30 arrays of 100 plus 1 000 singles) produced three times, and a
        fourth time after a restart: counted once, published exactly, each id once in ClickHouse."""
        w = cluster.worker("w1")
        w.wait_ready(90)
        now = now_ms()
        events = random_events(4000, 300, now, seed=61)
        valid = [validate_event(e, now) for e in events[:3000]]
        batch: list[Message] = [(b"replay-%d" % i, encode_events(valid[i : i + 100]), None)
                                for i in range(0, 3000, 100)] + keyed(events[3000:])
        for _ in range(3):
            await produce(cluster.bootstrap, cluster.topic, batch)
        await wait_metric(w, "streamer_events_duplicate_total", 8000, timeout_s=90)
        posts, want, _ = await settle_exact(redis_client, events, 4)
        assert posts == want
        assert w.metric("streamer_events_processed_total") == 4000
        assert w.metric("streamer_events_duplicate_total") == 8000
        assert w.terminate() == 0

        restarted_ms = now_ms()
        w2 = cluster.worker("w1")
        w2.wait_ready(90)
        await produce(cluster.bootstrap, cluster.topic, batch)
        await wait_metric(w2, "streamer_events_duplicate_total", 4000, timeout_s=90)
        posts, want, _ = await settle_exact(redis_client, events, 4, after_ms=restarted_ms)
        assert posts == want
        assert w2.metric("streamer_events_processed_total") == 0
        assert w2.terminate() == 0
        rows, distinct = ch_counts(w2.data_dir)
        assert distinct == 4000
        record_figures("6_replays", {
            "distinct_events": 4000, "messages_produced": 4 * len(batch), "events_delivered": 16_000,
            "duplicates_counted_once": 12_000, "clickhouse_rows": rows, "clickhouse_distinct": distinct,
            "events_lost": 0, "events_double_counted": 0,
        })
