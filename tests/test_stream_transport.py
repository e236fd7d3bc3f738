"""The transport override: registered under its scheme, batches per partition, Faust rules kept."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

import faust
import pytest
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.demo.services import LocalService
from streamer.stream import faust_compat as compat
from streamer.stream import transport
from streamer.stream.transport import (
    FETCH_MAX_WAIT_MS,
    ROUND_BYTES,
    ROUND_RECORDS_MAX,
    SCHEME,
    SETTLE_FETCH_WAIT_MS,
    FetchWait,
    LeanConsumer,
    LeanTransport,
    broker_url,
    register_batch_handler,
    register_transport,
    round_records,
)


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int
    value: bytes = b"{}"

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


def _app() -> Any:
    return type("App", (), {"topics": _Topics(), "consumer_generation_id": 1})()


@dataclass
class FakeConsumer:
    """Just the state `_drain_once` touches, with LeanConsumer's methods bound to it. A fake,
    not tansu: the races it stages (a rebalance or pause between fetch and delivery) cannot be
    produced on demand with a real broker; tests/test_stream_worker.py covers the real thing."""

    fetched: list[Msg]
    app: Any = field(default_factory=_app)
    active: set[TP] | None = None
    positions: dict[TP, int] = field(default_factory=dict)
    _buffered_partitions: set[TP] = field(default_factory=set)
    should_stop: bool = False
    flow_active: bool = True
    _commit_every: int | None = 3
    _n_acked: int = 0
    commits: int = 0
    callbacks: list[Msg] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    _read_offset: dict[TP, int | None] = field(default_factory=lambda: defaultdict(lambda: None))
    _rebalances: int = 0
    _round_records: int = 0
    seeks: int = 0

    _accept_offset = LeanConsumer._accept_offset
    _maybe_commit_every = LeanConsumer._maybe_commit_every
    _seek_back = LeanConsumer._seek_back
    _route = LeanConsumer._route
    _run_handlers = LeanConsumer._run_handlers
    _deliverable = LeanConsumer._deliverable
    sought: list[tuple[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return {TP("ev", 0), TP("ev", 1)}

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))
        self.positions[tp] = offset

    async def position(self, tp: TP) -> int | None:
        """Next offset to read: past everything fetched unless something sought since."""
        fetched = [m.offset + 1 for m in self.fetched if m.tp == tp]
        return self.positions.get(tp, max(fetched, default=None))

    async def _wait_next_records(self, timeout: float) -> tuple[dict[TP, list[Msg]], Any]:  # noqa: ASYNC109 - Faust signature
        records: dict[TP, list[Msg]] = {}
        for m in self.fetched:
            records.setdefault(m.tp, []).append(m)
        return records, self.active

    def _to_message(self, tp: TP, record: Msg) -> Msg:
        return record

    async def callback(self, message: Msg) -> None:
        self.callbacks.append(message)

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((start, end))

    async def commit(self) -> None:
        self.commits += 1


async def drain_recording(consumer: FakeConsumer) -> list[TP]:
    """One drain round with a handler on "ev" that consumes everything; the partitions it got."""
    handled: list[TP] = []

    async def handler(tp: TP, messages: list[Any]) -> bool:
        handled.append(tp)
        return True

    register_batch_handler(consumer.app, "ev", handler)
    await LeanConsumer._drain_once(cast(Any, consumer))
    return handled


class TestRegistration:
    """Faust finds the transport through its driver registry."""

    def test_scheme_resolves_to_the_lean_transport(self) -> None:
        """`streamer-kafka://` selects LeanTransport, whose consumer is LeanConsumer."""
        register_transport()
        assert TRANSPORTS.by_url(f"{SCHEME}://127.0.0.1:9092") is LeanTransport
        assert LeanTransport.Consumer is LeanConsumer
        assert issubclass(LeanConsumer, faust_aiokafka.Consumer)
        assert broker_url("a:1, b:2") == [f"{SCHEME}://a:1", f"{SCHEME}://b:2"]

    def test_a_faust_app_uses_it(self) -> None:
        """An app configured with the scheme builds LeanTransport (the extension point works)."""
        register_transport()
        app = faust.App("transport-test", broker=broker_url("127.0.0.1:9"))
        assert isinstance(app.transport, LeanTransport)


class TestFetchWait:
    """Idle fetches are held SETTLE_FETCH_WAIT_MS while an assignment settles (a rebalance's
    offset lookups wait behind the fetch in flight on the same connection) and Faust's 1.5 s
    otherwise (a worker below capacity reads rounds that long instead of tens of ms)."""

    async def test_the_started_consumer_fetches_with_the_wait_it_is_given(
        self, kafka_service: LocalService
    ) -> None:
        """The aiokafka consumer Faust's thread builds, started against a broker, hands the
        short wait to the Fetcher it makes (the value every fetch request carries), and a
        later change reaches that Fetcher."""
        register_transport()
        app: Any = faust.App("transport-fetch-wait", broker=broker_url(f"127.0.0.1:{kafka_service.port}"))
        app.topic("fetch-wait-ev")
        app.Table("fetch-wait-state", partitions=1)  # a worker's consumer: tables, Faust's assignor
        thread = app.consumer._thread
        consumer = thread._create_consumer(loop=asyncio.get_running_loop())
        await consumer.start()
        try:
            assert consumer._fetcher._fetch_max_wait_ms == SETTLE_FETCH_WAIT_MS < FETCH_MAX_WAIT_MS
            app.consumer._apply_fetch_wait(FETCH_MAX_WAIT_MS)
            assert consumer._fetcher._fetch_max_wait_ms == FETCH_MAX_WAIT_MS == 1500
        finally:
            await consumer.stop()

    async def test_short_from_each_assignment_until_its_recovery_settled(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An assignment shortens the wait; SETTLE_S after its recovery it is long again, unless
        another assignment came in between (that one's own recovery restores it)."""
        monkeypatch.setattr(transport, "SETTLE_S", 0.01)
        applied: list[int] = []
        wait = FetchWait(applied.append)
        wait.settling()
        wait.settled()
        await asyncio.sleep(0.1)
        assert applied == [FETCH_MAX_WAIT_MS]  # it started short: only the change is applied
        wait.settling()
        wait.settled()
        wait.settling()  # a second rebalance before the first settled
        await asyncio.sleep(0.1)
        assert applied == [FETCH_MAX_WAIT_MS, SETTLE_FETCH_WAIT_MS]
        wait.settled()
        await asyncio.sleep(0.1)
        assert applied == [FETCH_MAX_WAIT_MS, SETTLE_FETCH_WAIT_MS, FETCH_MAX_WAIT_MS]

    async def test_a_recovery_that_never_completes_ends_the_short_wait_too(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(transport, "SETTLE_MAX_S", 0.01)
        applied: list[int] = []
        wait = FetchWait(applied.append)
        wait.settling()
        await asyncio.sleep(0.1)
        assert applied == [FETCH_MAX_WAIT_MS]

    def test_a_changed_aiokafka_consumer_is_named(self) -> None:
        with pytest.raises(compat.FaustIncompatible, match=r"AIOKafkaConsumer\._fetch_max_wait_ms"):
            compat.set_fetch_max_wait(object(), FETCH_MAX_WAIT_MS)
        started = type("Consumer", (), {"_fetch_max_wait_ms": 1, "_fetcher": object()})()
        with pytest.raises(compat.FaustIncompatible, match=r"Fetcher\._fetch_max_wait_ms"):
            compat.set_fetch_max_wait(started, FETCH_MAX_WAIT_MS)


class _Thread:
    """Faust's consumer thread as `_getmany` uses it: what it was asked to run."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []

    def _ensure_consumer(self) -> str:
        return "aiokafka consumer"

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> dict[TP, list[Msg]]:
        return {}

    async def call_thread(self, fun: Any, *args: Any, **kwargs: Any) -> dict[TP, list[Msg]]:
        self.calls.append((fun, args, kwargs))
        return {TP("ev", 0): [Msg("ev", 0, 0)]}


class TestFetchRounds:
    """Rounds of about ROUND_BYTES of messages: thousands of small messages, as few large ones
    as broker_max_poll_records allows (each round wakes the loop and writes changelog records)."""

    def test_round_size_follows_the_message_size(self) -> None:
        def fetched(size: int, n: int) -> dict[TP, list[Msg]]:
            return {TP("ev", p): [Msg("ev", p, i, b"x" * size) for i in range(n)] for p in (0, 1)}

        assert round_records(fetched(100, 50)) == ROUND_RECORDS_MAX
        assert round_records(fetched(16 * 1024, 3)) == ROUND_BYTES // (16 * 1024)
        assert round_records({}) == 0 and round_records({TP("ev", 0): []}) == 0

    async def test_the_thread_is_asked_for_the_round_not_for_max_poll_records(self) -> None:
        """The override replaces Faust's fixed `broker_max_poll_records` per round; never below it."""
        thread = _Thread()
        conf = type("Conf", (), {"broker_max_poll_records": 500})()
        consumer = type("C", (), {"_thread": thread, "app": type("A", (), {"conf": conf})(),
                                  "_round_records": 6000})()
        active = {TP("ev", 0)}
        assert await LeanConsumer._getmany(cast(Any, consumer), active, 1.0) == {
            TP("ev", 0): [Msg("ev", 0, 0)]}
        consumer._round_records = 64
        await LeanConsumer._getmany(cast(Any, consumer), active, 1.0)
        funs = [call[0].__func__ for call in thread.calls]
        assert funs == [_Thread._fetch_records] * 2
        assert [call[1] for call in thread.calls] == [("aiokafka consumer", active)] * 2
        assert [call[2] for call in thread.calls] == [
            {"timeout": 1.0, "max_records": 6000}, {"timeout": 1.0, "max_records": 500}]

    async def test_each_round_sizes_the_next(self) -> None:
        consumer = FakeConsumer([Msg("ev", 0, 0), Msg("ev", 0, 1)])
        await drain_recording(consumer)
        assert consumer._round_records == ROUND_RECORDS_MAX  # 2-byte messages

    def test_a_faust_app_fetches_through_the_override(self) -> None:
        register_transport()
        app = faust.App("transport-rounds", broker=broker_url("127.0.0.1:9"))
        assert cast(Any, type(app.consumer))._getmany is LeanConsumer._getmany


class TestDrain:
    """One getmany round of the lean loop."""

    async def test_batches_per_partition_and_callbacks_for_other_topics(self) -> None:
        """Handled topics get one ordered call per partition; others go through Faust's callback."""
        fetched = [Msg("ev", 0, 0), Msg("ev", 1, 5), Msg("log", 0, 9), Msg("ev", 0, 1),
                   Msg("ev", 1, 6), Msg("ev", 0, 2)]
        consumer = FakeConsumer(fetched)
        calls: list[tuple[TP, list[int]]] = []

        async def handler(tp: TP, messages: list[Any]) -> bool:
            calls.append((tp, [m.offset for m in messages]))
            consumer._n_acked += len(messages)
            return True

        register_batch_handler(consumer.app, "ev", handler)
        await LeanConsumer._drain_once(cast(Any, consumer))
        assert calls == [(TP("ev", 0), [0, 1, 2]), (TP("ev", 1), [5, 6])]
        assert [m.offset for m in consumer.callbacks] == [9]
        assert consumer._read_offset[TP("ev", 0)] == 2 and consumer._read_offset[TP("ev", 1)] == 6
        assert consumer.commits == 1 and consumer._n_acked == 0
        assert consumer.gaps == []  # contiguous offsets are not holes

    async def test_refetched_offsets_are_dropped_and_gaps_only_outside_our_topic(self) -> None:
        """Offsets below the read offset are skipped. A jump is recorded as a gap (which Faust
        treats as acked) only for other topics: on ours it could only be an unread hole."""
        consumer = FakeConsumer([Msg("ev", 0, 3), Msg("ev", 0, 4), Msg("ev", 0, 9),
                                 Msg("log", 0, 4), Msg("log", 0, 9)])
        consumer._read_offset[TP("ev", 0)] = 4
        consumer._read_offset[TP("log", 0)] = 3
        seen: list[int] = []

        async def handler(tp: TP, messages: list[Any]) -> bool:
            seen.extend(m.offset for m in messages)
            return True

        register_batch_handler(consumer.app, "ev", handler)
        await LeanConsumer._drain_once(cast(Any, consumer))
        assert seen == [4, 9]
        assert [m.offset for m in consumer.callbacks] == [4, 9]
        assert consumer.gaps == [(5, 9)]  # from the "log" topic only

    async def test_unconsumed_batch_leaves_its_offsets_unread(self) -> None:
        """A handler that could not take a batch (partition not ready) does not move the read offset."""
        consumer = FakeConsumer([Msg("ev", 0, 10), Msg("ev", 0, 11)])

        async def handler(tp: TP, messages: list[Any]) -> bool:
            return False

        register_batch_handler(consumer.app, "ev", handler)
        await LeanConsumer._drain_once(cast(Any, consumer))
        assert consumer._read_offset[TP("ev", 0)] is None
        assert consumer.sought == [(TP("ev", 0), 10)]

    async def test_rebalance_during_a_round_drops_the_rest(self) -> None:
        """Batches fetched before a rebalance are not handled, leave no read offset behind, and
        the consumer seeks back to the committed offsets so they are fetched again."""
        consumer = FakeConsumer([Msg("ev", 0, 0), Msg("ev", 1, 0)])
        handled: list[TP] = []

        async def handler(tp: TP, messages: list[Any]) -> bool:
            handled.append(tp)
            consumer._rebalances += 1  # partitions revoked while this batch was processed
            return True

        register_batch_handler(consumer.app, "ev", handler)
        await LeanConsumer._drain_once(cast(Any, consumer))
        assert handled == [TP("ev", 0)]
        assert consumer._read_offset[TP("ev", 0)] is None
        assert consumer._read_offset[TP("ev", 1)] is None
        assert consumer.sought == [(TP("ev", 0), 0), (TP("ev", 1), 0)]  # both read again

    async def test_paused_partition_records_are_fetched_again(self) -> None:
        """Records fetched for a partition that is not active (paused during recovery) are not
        delivered, and its position goes back to the first of them (Faust drops them silently)."""
        consumer = FakeConsumer([Msg("ev", 0, 7), Msg("ev", 0, 8), Msg("ev", 1, 3)],
                                active={TP("ev", 1)})
        assert await drain_recording(consumer) == [TP("ev", 1)]
        assert consumer.sought == [(TP("ev", 0), 7)]

    async def test_no_seek_back_past_a_newer_seek(self) -> None:
        """When a seek since the fetch (to the committed offset) already put the partition at
        or before the unused records, seeking back to them would skip what lies between."""
        consumer = FakeConsumer([Msg("ev", 0, 500), Msg("ev", 0, 501)])

        async def handler(tp: TP, messages: list[Any]) -> bool:
            consumer._rebalances += 1
            consumer.positions[tp] = 200  # perform_seek to the committed offset meanwhile
            return True

        register_batch_handler(consumer.app, "ev", handler)
        await LeanConsumer._drain_once(cast(Any, consumer))
        assert consumer.sought == []
        assert consumer._read_offset[TP("ev", 0)] is None


@dataclass
class FakeThread:
    """The consumer thread's two seeks, recorded."""

    committed: dict[TP, int | None]
    rewound: list[Any] = field(default_factory=list)

    async def seek_to_committed(self) -> dict[TP, int | None]:
        return self.committed

    async def seek_to_beginning(self, *tps: Any) -> None:
        self.rewound.extend(tps)


class TestSeekToCommitted:
    """aiokafka leaves partitions without a commit where they are; we rewind ours."""

    async def test_uncommitted_partitions_of_handled_topics_start_over(self) -> None:
        """None and 0 mean nothing committed: rewind to the beginning; others stay untouched."""
        thread = FakeThread({TP("ev", 0): None, TP("ev", 1): 0, TP("ev", 2): 41,
                             TP("changelog", 0): None})
        consumer = type("C", (), {"app": _app(), "_thread": thread,
                                  "log": logging.getLogger("test")})()
        register_batch_handler(consumer.app, "ev", lambda tp, messages: None)  # type: ignore[arg-type,return-value]
        committed = await LeanConsumer.seek_to_committed(cast(Any, consumer))
        assert committed == thread.committed
        assert sorted((tp.topic, tp.partition) for tp in thread.rewound) == [("ev", 0), ("ev", 1)]


class TestDrainEdges:
    """Rounds in which nothing is left to hand over."""

    async def test_a_fetch_of_only_already_read_offsets_calls_no_handler(self) -> None:
        """Every fetched offset is below the read offset: no empty batch reaches the handler."""
        consumer = FakeConsumer([Msg("ev", 0, 3), Msg("ev", 0, 4)])
        consumer._read_offset[TP("ev", 0)] = 10
        assert await drain_recording(consumer) == [] and consumer.sought == []


class TestAckOffsets:
    """Acking a batch by its offsets leaves Faust's commit bookkeeping as per-message acks do."""

    @staticmethod
    async def _consumer(committed: int | None) -> Any:
        register_transport()
        app = faust.App("ack-offsets", broker=broker_url("127.0.0.1:9"))
        app.topics.add(app.topic("ev"))  # "ev" acks (an agent's topic does); "log" does not
        await cast(Any, app.topics)._update_indices()
        consumer: Any = app.consumer
        consumer._committed_offset[TP("ev", 0)] = committed
        return consumer

    @staticmethod
    def _state(consumer: Any) -> tuple[Any, ...]:
        return ({tp: list(v) for tp, v in consumer._acked.items() if v},
                {tp: set(v) for tp, v in consumer._acked_index.items() if v}, consumer._n_acked)

    @settings(max_examples=40, deadline=None)
    @given(batches=st.lists(st.tuples(st.sampled_from(["ev", "log"]),
                                      st.lists(st.integers(0, 40), max_size=12)), max_size=6),
           committed=st.none() | st.integers(0, 20))
    async def test_same_bookkeeping_as_faust_ack(
            self, batches: list[tuple[str, list[int]]], committed: int | None) -> None:
        """Repeats and offsets below the committed one included; the commit offset follows."""
        faust_acked, bulk = await self._consumer(committed), await self._consumer(committed)
        for topic, offsets in batches:
            tp = TP(topic, 0)
            for offset in offsets:
                faust_acked.ack(Message(topic, 0, offset, 0.0, 0, [], b"k", b"v", None, tp=tp))
            bulk.ack_offsets(tp, offsets)
        assert self._state(bulk) == self._state(faust_acked)
        assert bulk._new_offset(TP("ev", 0)) == faust_acked._new_offset(TP("ev", 0))
