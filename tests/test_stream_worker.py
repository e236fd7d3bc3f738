"""The stream worker end to end: real tansu broker, redis-server, embedded ClickHouse, subprocesses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from streamer.core.events import encode_events, validate_event
from streamer.core.partitioning import partition_for_post
from streamer.core.payloads import trending_key, trending_meta_key
from streamer.demo.services import LocalService
from tests.stream_helpers import (
    Cluster,
    Message,
    event,
    keyed,
    now_ms,
    produce,
    random_events,
    read_topic,
    settle_exact,
    wait_metric,
)
from tests.waiting import await_until

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def cluster_factory(
    kafka_service: LocalService, redis_url: str, tmp_path: Path
) -> Iterator[Any]:
    """Builds clusters and always stops their workers."""
    made: list[Cluster] = []

    def make(partitions: int = 4) -> Cluster:
        c = Cluster(kafka_service, redis_url, tmp_path, partitions)
        made.append(c)
        return c

    yield make
    for c in made:
        c.kill_all()


def ch_distinct_events(data_dir: Path) -> int:
    """Distinct event ids the worker wrote to its embedded ClickHouse (read in a child process)."""
    code = (
        "import clickhouse_connect,sys;"
        f"c=clickhouse_connect.get_client(dsn='chdb://{(data_dir / 'clickhouse').resolve()}');"
        "print(c.query('SELECT uniqExact(event_id) FROM nova.post_events').result_rows[0][0])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def bad_messages(now: int) -> list[tuple[bytes | None, bytes, int | None, str]]:
    """(key, value, partition, expected reason) for every kind of bad input."""
    good = event("ok-in-bad-batch", 7, now - 1000)
    return [
        (b"1", b"not json{", None, "invalid_json"),
        (b"1", b"42", None, "not_an_object"),
        (b"1", orjson.dumps({"event_id": "m1", "post_id": 1, "user_id": 1, "ts": now}), None,
         "missing_field"),
        (b"1", orjson.dumps(event("u1", 1, now, "dislike")), None, "unknown_event_type"),
        (b"1", orjson.dumps({**event("s1", 1, now), "post_id": "1"}), None, "invalid_type"),
        (b"1", orjson.dumps(event("f1", 1, now + 10 * 60_000)), None, "future_ts"),
        (b"7", orjson.dumps([good, {"event_id": "b1"}]), None, "missing_field"),
    ]


class TestOneWorker:
    """One worker, every kind of input."""

    async def test_exact_publish_dlq_and_metrics(self, cluster_factory: Any, redis_client: Redis) -> None:
        """Duplicates, late, future and malformed input: the publish equals the brute force,
        the DLQ holds the bad ones with reasons, metrics count them, ClickHouse gets the rest."""
        c = cluster_factory(4)
        w = c.worker("w1")
        statuses = w.wait_ready_statuses(90)
        assert statuses[0] == 503 and statuses[-1] == 200
        now = now_ms()
        good = random_events(3000, 200, now, seed=1)
        dups = good[:300]
        late = [event(f"late-{i}", i, now - 3 * 3600_000) for i in range(20)]
        soon = [event(f"soon-{i}", i, now + 2 * 60_000) for i in range(5)]  # valid, not yet in window
        bad = bad_messages(now)
        await produce(c.bootstrap, c.topic, keyed(good) + keyed(dups) + keyed(late) + keyed(soon)
                      + [(k, v, p) for k, v, p, _ in bad])
        all_valid = [*good, *dups, *late, *soon, event("ok-in-bad-batch", 7, now - 1000)]
        posts, want, meta = await settle_exact(redis_client, all_valid, 4)
        assert posts == want and len(posts) == 50
        assert meta["mode"] == "stream" and meta["complete"] and meta["partitions"] == [0, 1, 2, 3]

        dead = await read_topic(c.bootstrap, c.dlq, len(bad))
        reasons = sorted(dict(r.headers)["error"].decode().split(":")[0] for r in dead)
        assert reasons == sorted(r for *_, r in bad)
        assert any(r.value == b"not json{" for r in dead)
        assert w.metric("streamer_events_invalid_total", 'reason="missing_field"') == 2
        assert w.metric("streamer_events_processed_total") == 3000 + 5 + 1
        assert w.metric("streamer_events_duplicate_total") == 300
        assert w.metric("streamer_events_late_total") == 20
        assert c.stop_all() == [0]
        assert ch_distinct_events(w.data_dir) == 3000 + 5 + 1 + 20


class TestRouting:
    """Batches and misrouted events."""

    async def test_batches_and_misrouted_events_count_exactly(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """100-event arrays keyed by anything and events put in the wrong partition are forwarded
        to their post's partition and counted once."""
        c = cluster_factory(4)
        w = c.worker("w1")
        w.wait_ready(90)
        now = now_ms()
        events = random_events(4000, 300, now, seed=2)
        valid = [validate_event(e, now) for e in events]
        batches: list[Message] = [(b"batch-%d" % i, encode_events(valid[i : i + 100]), None)
                   for i in range(0, 3000, 100)]
        misrouted: list[Message] = [(b"x", orjson.dumps(e), (partition_for_post(e["post_id"], 4) + 1) % 4)
                     for e in events[3000:]]
        replay = batches[:5]  # a producer retry of whole batches
        await produce(c.bootstrap, c.topic, batches + misrouted + replay)
        posts, want, _ = await settle_exact(redis_client, events, 4)
        assert posts == want
        assert w.metric("streamer_events_forwarded_total") > 1000
        assert w.metric("streamer_events_processed_total") == 4000
        assert c.stop_all() == [0]


class TestTwoWorkers:
    """Two workers in one group share the partitions; the publish is global."""

    async def test_two_workers_publish_exact_global_top50(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """Each worker owns some partitions; the merged array is the exact global top-50."""
        c = cluster_factory(4)
        w1, w2 = c.worker("w1"), c.worker("w2")
        w1.wait_ready(90)
        w2.wait_ready(90)
        now = now_ms()
        events = random_events(6000, 500, now, seed=3)
        await produce(c.bootstrap, c.topic, keyed(events))
        posts, want, meta = await settle_exact(redis_client, events, 4)
        assert posts == want and len(posts) == 50
        assert meta["partitions"] == [0, 1, 2, 3] and meta["missing_partitions"] == []
        owned = [w.metric("streamer_partitions_owned") for w in (w1, w2)]
        assert sorted(owned) == [2, 2]
        assert c.stop_all() == [0, 0]


class TestCrash:
    """kill -9 then restart."""

    @pytest.mark.parametrize("store", ["memory", "rocksdb"])
    async def test_kill9_mid_stream_then_restart_is_exact(
        self, cluster_factory: Any, redis_client: Redis, store: str
    ) -> None:
        """Killed while consuming, restarted on the same data dir: nothing lost, nothing twice."""
        c = cluster_factory(4)
        w = c.worker("w1", STREAMER_TABLE_STORE=store)
        w.wait_ready(90)
        now = now_ms()
        events = random_events(30000, 1000, now, seed=4)
        producing = asyncio.create_task(produce(c.bootstrap, c.topic, keyed(events)))
        await wait_metric(w, "streamer_events_processed_total", 3000)
        w.kill()
        await producing
        restarted_ms = now_ms()
        w2 = c.worker("w1", STREAMER_TABLE_STORE=store)
        w2.wait_ready(120)
        # only a publish of the restarted worker counts (the killed one's expires meanwhile)
        posts, want, _ = await settle_exact(redis_client, events, 4, after_ms=restarted_ms)
        assert posts == want
        processed = w2.metric("streamer_events_processed_total")
        assert 0 < processed < 30000, processed  # resumed the rest; recovered, not replayed
        assert c.stop_all() == [0]


    async def test_kill9_restart_then_move_to_an_empty_worker_is_exact(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """kill -9 mid-stream and a restart on the same RocksDB dir, then the partitions move to
        a worker with an empty data dir, which has only the changelog to rebuild from: still
        exact. Records the killed worker stored locally but never got into the changelog must
        not stand in for it (their events would be skipped as duplicates, then lost on a move)."""
        c = cluster_factory(4)
        w = c.worker("w1", STREAMER_TABLE_STORE="rocksdb")
        w.wait_ready(90)
        events = random_events(30000, 1000, now_ms(), seed=7)
        producing = asyncio.create_task(produce(c.bootstrap, c.topic, keyed(events)))
        await wait_metric(w, "streamer_events_processed_total", 3000)
        w.kill()
        await producing
        restarted_ms = now_ms()
        w2 = c.worker("w1", STREAMER_TABLE_STORE="rocksdb")
        w2.wait_ready(120)
        posts, want, _ = await settle_exact(redis_client, events, 4, after_ms=restarted_ms)
        assert posts == want
        assert w2.metric("streamer_events_processed_total") > 0  # it resumed the killed one's work
        assert w2.terminate() == 0
        await redis_client.delete(trending_key(1), trending_meta_key(1))
        moved_ms = now_ms()
        w3 = c.worker("w3", STREAMER_TABLE_STORE="rocksdb")
        w3.wait_ready(120)
        # a publish generated after w3 started is w3's own (w2 has exited): it did rebuild
        posts, want, _ = await settle_exact(redis_client, events, 4, after_ms=moved_ms)
        assert posts == want, "the changelog alone must hold every counted event"
        assert w3.metric("streamer_events_processed_total") == 0  # rebuilt, nothing re-counted
        assert c.stop_all() == [0]


class TestFailover:
    """A worker dies; the other takes its partitions over from their changelog."""

    async def test_survivor_recovers_the_dead_workers_partitions(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """kill -9 of one of two workers: the survivor owns all partitions and stays exact.
        The victim never commits, so the survivor starts its partitions without a committed
        offset: records it fetched there during recovery must be read again (they were lost
        before b8bcb91, in about 1 run of 3)."""
        c = cluster_factory(4)
        w1, w2 = c.worker("w1"), c.worker("w2", STREAMER_COMMIT_INTERVAL_MS="600000")
        w1.wait_ready(90)
        w2.wait_ready(90)
        now = now_ms()
        events = random_events(8000, 400, now, seed=6)
        await produce(c.bootstrap, c.topic, keyed(events[:4000]))
        await wait_metric(w2, "streamer_events_processed_total", 1)
        w2.kill()
        killed_ms = now_ms()
        await produce(c.bootstrap, c.topic, keyed(events[4000:]))
        posts, want, meta = await settle_exact(redis_client, events, 4, timeout_s=45, after_ms=killed_ms)
        assert posts == want and meta["partitions"] == [0, 1, 2, 3]
        assert w1.metric("streamer_partitions_owned") == 4
        assert c.stop_all() == [0]


async def reconcile_report_after(redis: Redis, after_ms: int) -> dict[str, Any]:
    """The stored reconcile report once one generated after `after_ms` is there ({} or the last
    one seen after about 60 s)."""
    from streamer.core.payloads import reconcile_key

    report: dict[str, Any] = {}
    for _ in range(300):
        raw = await redis.get(reconcile_key(1))
        report = orjson.loads(raw) if raw else {}
        if report.get("generated_at_ms", 0) > after_ms:
            break
        await asyncio.sleep(0.2)
    return report


class TestReconcileHook:
    """The merger hands complete-window partials to the reconciler."""

    async def test_reconcile_report_agrees_with_clickhouse(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """Complete-window partials of every partition reach the reconciler; ClickHouse (fed by
        the worker's sink) agrees with them."""
        c = cluster_factory(2)
        w = c.worker("w1", JOB_RECONCILE_INTERVAL_SEC="4")
        w.wait_ready(90)
        events = random_events(2000, 100, now_ms() - 70_000, seed=5)  # settled minutes
        await produce(c.bootstrap, c.topic, keyed(events))
        await wait_metric(w, "streamer_events_processed_total", 2000)
        after = now_ms()
        report = await reconcile_report_after(redis_client, after)
        assert report.get("generated_at_ms", 0) > after, w.tail()
        assert report["partitions"] == [0, 1] and report["complete"]
        assert report["agrees"] is True and report["topk_overlap"] == 1.0
        assert c.stop_all() == [0]

    async def test_two_workers_embedded_engines_each_hold_every_event(
        self, cluster_factory: Any, redis_client: Redis
    ) -> None:
        """Two workers on the embedded default: each engine is a whole copy (its sink reads every
        partition in a group of its own), so the reconciler, whichever worker runs it, agrees
        with its engine. With one shared sink group each engine held about half the events and
        reconcile saw drift, then switched trending to that half (found by the soak)."""
        c = cluster_factory(4)
        w1 = c.worker("w1", JOB_RECONCILE_INTERVAL_SEC="4")
        w2 = c.worker("w2", JOB_RECONCILE_INTERVAL_SEC="4")
        w1.wait_ready(90)
        w2.wait_ready(90)
        events = random_events(3000, 150, now_ms() - 70_000, seed=7)  # settled minutes
        await produce(c.bootstrap, c.topic, keyed(events))
        for w in (w1, w2):
            await wait_metric(w, "streamer_sink_batch_size_sum", 3000, timeout_s=90)
        after = now_ms()
        report = await reconcile_report_after(redis_client, after)
        assert report.get("generated_at_ms", 0) > after, w1.tail() + w2.tail()
        assert report["complete"] and report["agrees"] is True, report
        assert w1.metric("streamer_sink_batch_size_sum") == 3000
        assert w2.metric("streamer_sink_batch_size_sum") == 3000
        assert c.stop_all() == [0, 0]


class TestStopping:
    """SIGTERM ends the worker with exit code 0, also before it is up."""

    async def test_sigterm_while_the_broker_is_unreachable(self, cluster_factory: Any) -> None:
        """HTTP answers 503 while Kafka is down; SIGTERM during startup still exits 0."""
        from streamer.demo.services import free_port

        c = cluster_factory(4)
        w = c.worker("w1", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
        await await_until(lambda: w.get("/readyz")[0] != 0, 30, "HTTP before Kafka")
        assert w.get("/readyz")[0] == 503
        assert w.terminate(60) == 0
