"""The Faust app: lean transport, the events topic, and the state table co-partitioned with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, cast

import faust
from faust.types import TP

from streamer.core.records import parse_record_key
from streamer.kafka.client import faust_credentials
from streamer.ops.memory import ROCKSDB_TABLE_OPTIONS
from streamer.settings.model import Settings
from streamer.stream import faust_compat
from streamer.stream.transport import LeanConsumer, broker_url, register_transport

STATE_TABLE = "state"
RecoveredHook = Callable[[set[int]], Awaitable[None]]


class StateTable(faust.Table[bytes, bytes]):
    """The records table; tells the worker which partitions finished recovery."""

    on_recovered: RecoveredHook | None = None

    async def on_recovery_completed(self, active_tps: set[TP], standby_tps: set[TP]) -> None:
        """Faust restored the changelog into the store: rebuild the partitions' state."""
        await super().on_recovery_completed(active_tps, standby_tps)
        if isinstance(self.app.consumer, LeanConsumer):  # the rebalance settled: long fetches again
            self.app.consumer.fetch_wait.settled()
        if self.on_recovered is not None:
            await self.on_recovered({tp.partition for tp in active_tps})


def app_options(settings: Settings, partitions: int) -> dict[str, Any]:
    """faust.App settings: our transport, no web server, consumer timings from settings."""
    data_dir = settings.streamer_data_dir.resolve()
    return dict(
        broker=broker_url(settings.kafka_bootstrap_servers),
        broker_credentials=faust_credentials(settings),  # TLS / SASL, as every other client
        store="memory://" if settings.streamer_table_store == "memory" else "rocksdb://",
        datadir=str(data_dir / "faust"),
        web_enabled=False,
        table_standby_replicas=0,
        topic_partitions=partitions,
        # Every topic Faust declares (changelog, assignor leader) gets the replication factor;
        # table changelogs are created with cleanup.policy=compact (Faust's default, tested).
        topic_replication_factor=settings.kafka_replication_factor,
        broker_rebalance_timeout=settings.streamer_rebalance_timeout_sec,
        broker_session_timeout=settings.streamer_session_timeout_sec,
        broker_heartbeat_interval=settings.streamer_heartbeat_interval_sec,
        broker_commit_interval=settings.streamer_commit_interval_ms / 1000,
        stream_recovery_delay=0.2,
        # tansu reports a multi-record batch's high watermark as base offset + 1, which can make
        # an offset read look "past the end" and crash recovery on this check. It guards against
        # a recreated changelog with a persisted local offset; local state is cleared at every
        # start (below), so it has nothing to guard here.
        recovery_consistency_check=False,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=4 * 1024 * 1024,
        broker_max_poll_records=500,  # least records per fetch round (stream.transport sizes rounds by bytes)
        consumer_max_fetch_size=4 * 1024 * 1024,  # per partition and fetch; 1 MiB starved batches
        Table=StateTable,
    )


def build_app(settings: Settings, partitions: int) -> tuple[faust.App, StateTable]:
    """The worker's Faust app (subscribed to the events topic) and its state table."""
    register_transport()
    app = faust.App(settings.streamer_app_id, **app_options(settings, partitions))
    topic = app.topic(
        settings.kafka_events_topic, key_serializer="raw", value_serializer="raw",
        partitions=partitions,
    )
    table = app.Table(  # the store pops keys from `options`: a copy
        STATE_TABLE, partitions=partitions, key_type=bytes, value_type=bytes,
        options=dict(ROCKSDB_TABLE_OPTIONS),
    )

    if settings.streamer_table_store != "memory":
        # RocksDB is written before the changelog send is confirmed, so after a crash it can
        # hold records the changelog never got; their events would then be skipped as
        # duplicates here and lost when the partition moves. The changelog is the only truth:
        # every start rebuilds from it (RocksDB keeps the records out of RAM meanwhile).
        table.reset_state()

    @app.agent(topic, name="ingest")
    async def ingest(stream: Any) -> None:
        """Subscribes the topic; the lean transport delivers its messages in batches instead."""
        async for _ in stream:  # pragma: no cover - never reached
            pass

    return app, cast(StateTable, table)


class TableWriter:
    """Writes records to the table store and its changelog with an explicit partition.

    Changelog sends of one partition go out one at a time (each waits for the previous ack), so
    every produce request carries a single-record batch. Records are few (one per fetched
    batch), and it sidesteps brokers that report a multi-record batch's high watermark wrongly
    (tansu: base offset + 1), which could end a recovery before the last records.
    """

    def __init__(self, table: StateTable, source_topic: str) -> None:
        self.table = table
        self.source_topic = source_topic
        self._queues: dict[int, asyncio.Queue[tuple[bytes, bytes | None, asyncio.Future[Any]]]] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}

    def put(self, partition: int, key: bytes, value: bytes | None) -> Awaitable[Any]:
        """Store locally and send to the changelog; the future resolves when the broker has it."""
        with faust_compat.source_partition(self.source_topic, partition):  # the store's partition
            if value is None:
                self.table.data.pop(key, None)
            else:
                self.table.data[key] = value
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        queue = self._queues.get(partition)
        if queue is None:
            queue = self._queues[partition] = asyncio.Queue()
            self._senders[partition] = asyncio.create_task(self._send_loop(partition, queue))
        queue.put_nowait((key, value, fut))
        return fut

    async def _send_loop(
        self, partition: int, queue: asyncio.Queue[tuple[bytes, bytes | None, asyncio.Future[Any]]]
    ) -> None:
        while True:
            key, value, fut = await queue.get()
            try:
                await self.table.send_changelog(
                    partition, key, value, key_serializer="raw", value_serializer="raw"
                )
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(None)

    async def close(self) -> None:
        """Stop the sender tasks (after the ingestor drained)."""
        for task in self._senders.values():
            task.cancel()
        await asyncio.gather(*self._senders.values(), return_exceptions=True)

    def records(self, partition: int) -> Iterator[tuple[bytes, bytes]]:
        """Recovered records of one partition (keys carry the partition)."""
        prefix = b"%d:" % partition
        for key, value in list(self.table.data.items()):
            raw = key if isinstance(key, bytes) else str(key).encode()
            if raw.startswith(prefix) and value is not None:
                parse_record_key(raw)
                yield raw, value
