"""`streamer worker`: runs the Faust app, the publisher, the sink, the jobs and HTTP in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from faust.types import TP, Message
from redis.asyncio import Redis

from streamer.cache.redis_client import make_redis
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.config import Settings
from streamer.core.payloads import sink_positions_key
from streamer.jobs.runner import JobRunner
from streamer.jobs.suggestions import SuggestionsJob
from streamer.kafka_admin import ensure_topics
from streamer.ops.http import start_http
from streamer.ops.metrics import CONSUMER_LAG
from streamer.stream.app import StateTable, TableWriter, build_app
from streamer.stream.ingest import Ingestor, Outgoing
from streamer.stream.publisher import Publisher
from streamer.stream.reconcile_hook import ReconcileHook
from streamer.stream.sink_consumer import ClickHouseSinkConsumer
from streamer.stream.transport import register_batch_handler

log = logging.getLogger("streamer.worker")
STOP_DEADLINE_S = 55.0  # the contract allows 60 s; the watchdog hard-exits before that
FAUST_STOP_S = 30.0


async def topic_partitions(bootstrap: str, topic: str, timeout_s: float = 30.0) -> int:
    """Number of partitions of a topic, from Kafka metadata."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await asyncio.wait_for(consumer.start(), timeout_s)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            await asyncio.wait_for(consumer.topics(), timeout_s)
            parts = consumer.partitions_for_topic(topic)
            if parts:
                return len(parts)
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions")
            await asyncio.sleep(0.2)
    finally:
        await consumer.stop()


def start_watchdog(deadline_s: float) -> threading.Timer:
    """Hard exit (code 0) if a clean stop has not finished in time, e.g. Faust hangs stopping."""

    def fire() -> None:
        log.error("shutdown did not finish within %.0fs: forcing exit", deadline_s)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(deadline_s, fire)
    timer.daemon = True
    timer.start()
    return timer


def load_reconciler(settings: Settings, ch: ClickHouse | None, redis: Redis) -> ReconcileHook | None:
    """The reconciler of `streamer.jobs.reconcile` if that module exists (hook point)."""
    if ch is None:
        return None
    try:
        from streamer.jobs import reconcile  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    factory: Callable[..., ReconcileHook] | None = getattr(reconcile, "make_stream_reconciler", None)
    return factory(settings, ch, redis) if factory is not None else None


@dataclass
class Worker:
    """Everything one worker process runs."""

    settings: Settings
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int = 0
    tasks: list[asyncio.Future[Any]] = field(default_factory=list)
    redis: Redis | None = None
    ch: ClickHouse | None = None
    sink: ClickHouseSinkConsumer | None = None
    runner: JobRunner | None = None

    async def run(self) -> int:
        """Serve HTTP at once (503 until ready), start the rest, run until stop, stop in time."""
        http = await start_http(self.settings.streamer_web_port, self.readiness)
        try:
            starting = asyncio.ensure_future(self._start())
            stopping = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            else:
                starting.result()
                await stopping
        finally:
            await self._shutdown()
            await http.cleanup()
        return self.exit_code

    async def _kafka_partitions(self) -> int:
        """Create the topics if missing and read the partition count; retry until Kafka answers."""
        s = self.settings
        delay_s = 0.5
        while True:
            try:
                await ensure_topics(s.kafka_bootstrap_servers, {
                    s.kafka_events_topic: s.streamer_topic_partitions, s.kafka_dlq_topic: 1})
                return await topic_partitions(s.kafka_bootstrap_servers, s.kafka_events_topic)
            except Exception as exc:
                log.warning("Kafka at %s not usable yet (%s: %s); retrying in %.1fs",
                            s.kafka_bootstrap_servers, type(exc).__name__, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, 10.0)

    async def _start(self) -> None:
        s = self.settings
        partitions = await self._kafka_partitions()
        redis = self.redis = make_redis(s)
        self.ch = await self._clickhouse(partitions)
        self.app, _, table = build_app(s, partitions)
        self.ingestor = self._ingestor(table, partitions)
        reconcile = load_reconciler(s, self.ch, self.redis)
        self.publisher = Publisher(s, self.redis, self.ingestor, lambda: self._partitions(partitions),
                                   self.ch, reconcile)
        await self.app.start()
        self._spawn(self.publisher.run(self.stop), self._monitor())
        if self.sink is not None:
            self._spawn(self.sink.run(self.stop))
        self._start_jobs(redis)
        log.info("worker running: topic %s with %d partitions", s.kafka_events_topic, partitions)

    async def _clickhouse(self, partitions: int) -> ClickHouse | None:
        s = self.settings
        ch = ClickHouse.from_settings(s)
        try:
            await create_schema(ch)
        except Exception as exc:
            log.warning("ClickHouse schema check failed (sink will retry): %s", exc)
        sink_on = s.streamer_clickhouse_sink

        redis = self.redis

        async def insert(events: Any, positions: Any) -> None:
            await queries.insert_events(ch, events, positions)

        async def publish_positions(offsets: dict[int, int]) -> None:
            if redis is not None and offsets:
                await redis.hset(sink_positions_key(s.streamer_app_id),
                                 mapping={str(p): o for p, o in offsets.items()})

        self.sink = (ClickHouseSinkConsumer(s, partitions, insert, publish_positions)
                     if sink_on else None)
        return ch

    def _ingestor(self, table: StateTable, partitions: int) -> Ingestor:
        s = self.settings
        app = self.app
        producer = app.producer

        async def send_many(items: list[Outgoing]) -> None:
            """One coroutine per batch (not a task per message): enqueue in order, await acks."""
            futures = [await producer.send(topic, key, value, partition, None, headers)
                       for topic, key, value, partition, headers in items]
            await asyncio.gather(*futures)

        def ack(message: Message) -> None:
            app.consumer.ack(message)

        ingestor = Ingestor(TableWriter(table, s.kafka_events_topic), send_many, ack, partitions,
                            s.window_minutes, s.kafka_events_topic, s.kafka_dlq_topic)
        register_batch_handler(app, s.kafka_events_topic, ingestor.handle_batch)
        table.on_recovered = ingestor.on_recovered
        topic = s.kafka_events_topic

        def ours(tps: set[TP]) -> set[int]:
            return {tp.partition for tp in tps if tp.topic == topic}

        async def on_revoked(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
            await ingestor.on_revoked(ours(args[0]))

        async def on_assigned(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
            ingestor.on_assigned(ours(args[0]))

        app.on_partitions_revoked.connect(on_revoked, weak=False)
        app.on_partitions_assigned.connect(on_assigned, weak=False)
        return ingestor

    def _partitions(self, fallback: int) -> int:
        with contextlib.suppress(Exception):
            count = self.app.consumer.topic_partitions(self.settings.kafka_events_topic)
            if count:
                return int(count)
        return fallback

    def _spawn(self, *coros: Awaitable[Any]) -> None:
        for coro in coros:
            self.tasks.append(asyncio.ensure_future(coro))

    def _start_jobs(self, redis: Redis) -> None:
        if self.ch is None:
            return
        self.runner = JobRunner([SuggestionsJob(self.settings, self.ch, redis)], redis,
                                self.settings.job_max_concurrent)
        self._spawn(self.runner.run_forever())

    async def readiness(self) -> tuple[bool, str]:
        """Ready when every assigned partition is recovered and Redis answers."""
        ingestor = getattr(self, "ingestor", None)
        if ingestor is None or not ingestor.ready:
            return False, "partitions not assigned or state not recovered yet"
        assert self.redis is not None
        await self.redis.ping()
        return True, f"partitions {sorted(ingestor.states)} recovered; redis reachable"

    async def _monitor(self) -> None:
        """Exit on fatal errors; keep the per-partition lag gauge current."""
        while not self.stop.is_set():
            if self.ingestor.fatal is not None or self.app.crashed:
                log.critical("fatal: %r", self.ingestor.fatal or self.app.crash_reason)
                self.exit_code = 1
                self.stop.set()
                return
            self._update_lag()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    def _update_lag(self) -> None:
        consumer = self.app.consumer
        topic = self.settings.kafka_events_topic
        for partition in list(self.ingestor.states):
            with contextlib.suppress(Exception):
                tp = TP(topic, partition)
                high = consumer.highwater(tp)
                read = getattr(consumer, "_read_offset", {}).get(tp)
                if high is not None:
                    lag = high - (read + 1 if read is not None else 0)
                    CONSUMER_LAG.labels(partition=str(partition)).set(max(lag, 0))

    async def _shutdown(self) -> None:
        log.info("stopping worker")
        ingestor: Ingestor | None = getattr(self, "ingestor", None)
        if self.sink is not None and ingestor is not None:  # before stop: the sink reads it then
            self.sink.drain_to({p: st.next_offset for p, st in ingestor.states.items()
                                if st.next_offset >= 0})
        self.stop.set()
        if self.runner is not None:
            self.runner.stop()
        app: faust.App | None = getattr(self, "app", None)
        if app is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ingestor.drain(), 10)
                await self.ingestor.writer.close()

            try:
                await asyncio.wait_for(app.stop(), FAUST_STOP_S)
            except Exception as exc:
                log.warning("Faust did not stop cleanly: %r", exc)
        await asyncio.wait(self.tasks, timeout=20) if self.tasks else None
        for task in self.tasks:
            task.cancel()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.ch is not None:
            self.ch.close()


def run_worker(settings: Settings) -> int:
    """Entry point of `streamer worker`: SIGTERM/SIGINT stop it with exit 0 within 60 s."""

    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps stacks

    async def main() -> int:
        worker = Worker(settings)
        loop = asyncio.get_running_loop()
        watchdogs: list[threading.Timer] = []

        def on_signal(signum: int, frame: Any) -> None:
            # A plain signal handler runs between bytecodes even while the loop is busy, so the
            # watchdog starts at once; the loop sees the stop request when it gets control.
            if not watchdogs:
                watchdogs.append(start_watchdog(STOP_DEADLINE_S))
            loop.call_soon_threadsafe(worker.stop.set)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        code = await worker.run()
        for timer in watchdogs:
            timer.cancel()
        return code

    return asyncio.run(main())
