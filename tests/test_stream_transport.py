"""The transport override: registered under its scheme, batches per partition, Faust rules kept."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from faust.transport.drivers import TRANSPORTS
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streamer.stream.transport import (
    SCHEME,
    LeanConsumer,
    LeanTransport,
    broker_url,
    register_batch_handler,
    register_transport,
)


@dataclass
class Msg:
    topic: str
    partition: int
    offset: int

    @property
    def tp(self) -> TP:
        return TP(self.topic, self.partition)


class _Topics:
    def acks_enabled_for(self, topic: str) -> bool:
        return True


@dataclass
class FakeConsumer:
    """Just the state `_drain_once` touches, with LeanConsumer's methods bound to it."""

    fetched: list[Msg]
    app: Any = field(default_factory=lambda: type("App", (), {"topics": _Topics()})())
    should_stop: bool = False
    flow_active: bool = True
    _commit_every: int | None = 3
    _n_acked: int = 0
    commits: int = 0
    callbacks: list[Msg] = field(default_factory=list)
    gaps: list[tuple[int, int]] = field(default_factory=list)
    _read_offset: dict[TP, int | None] = field(default_factory=lambda: defaultdict(lambda: None))
    _rebalances: int = 0
    seeks: int = 0

    _accept_offset = LeanConsumer._accept_offset
    _maybe_commit_every = LeanConsumer._maybe_commit_every
    _seek_back = LeanConsumer._seek_back
    sought: list[tuple[TP, int]] = field(default_factory=list)

    def assignment(self) -> set[TP]:
        return {TP("ev", 0), TP("ev", 1)}

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Msg]]:  # noqa: ASYNC109 - Faust signature
        for m in self.fetched:
            yield m.tp, m

    async def callback(self, message: Msg) -> None:
        self.callbacks.append(message)

    async def _add_gap(self, tp: TP, start: int, end: int) -> None:
        self.gaps.append((start, end))

    async def commit(self) -> None:
        self.commits += 1


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
