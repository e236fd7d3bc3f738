"""`streamer worker`: runs the Faust app, the publisher, the sink, the jobs and HTTP in one loop."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import logging
import signal
from collections.abc import Awaitable
from typing import Any, cast

import faust
from faust.types import TP
from redis.asyncio import Redis

from streamer.cache.redis_client import make_redis
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.core.payloads import sink_positions_key
from streamer.core.people import counting_of
from streamer.core.sink_rows import SinkRows
from streamer.core.sink_tap import SinkTap
from streamer.errors import StartError
from streamer.jobs.reconcile import make_stream_reconciler
from streamer.jobs.runner import JobRunner
from streamer.jobs.suggestions import SuggestionsJob
from streamer.kafka.admin import wait_for_topics
from streamer.kafka.sink_consumer import ClickHouseSinkConsumer, tap_idle_ms
from streamer.ops.http import start_http
from streamer.ops.logging import error_text
from streamer.ops.memory import freeze_startup_heap, release_free_heap, tune_allocator
from streamer.ops.metrics import CONSUMER_LAG, serve_as
from streamer.ops.shutdown import Shutdown
from streamer.settings.live import LiveSettings, live_of, start_reloading
from streamer.settings.model import Settings
from streamer.stream import faust_compat
from streamer.stream.app import StateTable, TableWriter, build_app
from streamer.stream.ingest import Ingestor, Outgoing
from streamer.stream.startup import StartClock, prepare_data_dir
from streamer.stream.transport import LeanConsumer, register_batch_handler
from streamer.trending.merger import Publisher

log = logging.getLogger("streamer.worker")
# Caps of the stop steps; each is also bounded by what is left of the one stop budget.
DRAIN_STOP_S = 10.0
FAUST_STOP_S = 30.0
TASKS_STOP_S = 20.0


class Worker:
    """Everything one worker process runs; it stops through the process's one stop sequence."""

    def __init__(
        self, settings: Settings, shutdown: Shutdown, live: LiveSettings | None = None
    ) -> None:
        self.settings = settings
        self.shutdown = shutdown
        self.stop = shutdown.stop
        self.exit_code = 0
        self.tasks: list[asyncio.Future[Any]] = []
        self.redis: Redis | None = None
        self.ch: ClickHouse | None = None
        self.sink: ClickHouseSinkConsumer | None = None
        self.tap: SinkTap | None = None  # the stream hands the sink its decoded rows here
        self.assigned = asyncio.Event()  # the stream group's first assignment arrived
        self.runner: JobRunner | None = None
        self.app: faust.App | None = None
        self.ingestor: Ingestor | None = None
        self.start_clock = StartClock(settings.streamer_start_timeout_sec)
        self.live = live or live_of(settings)  # reloads (STREAMER_CONFIG_FILE, SIGHUP) reach the loops

    async def run(self) -> int:
        """Serve HTTP at once (503 until ready), start the rest, run until stop, stop in time."""
        s = self.settings
        self.start_clock.step = f"preparing STREAMER_DATA_DIR {s.streamer_data_dir}"
        prepare_data_dir(s.streamer_data_dir)
        self.start_clock.step = f"serving HTTP on STREAMER_WEB_PORT {s.streamer_web_port}"
        serve_as("worker", s.job_trending_interval_sec)
        http = await self.start_clock.run(start_http(s.streamer_web_port, self.readiness))
        try:
            starting = asyncio.ensure_future(self.start_clock.run(self._start()))
            stopping = asyncio.ensure_future(self.stop.wait())
            await asyncio.wait([starting, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                await asyncio.wait([starting], timeout=self.shutdown.left_s(DRAIN_STOP_S))
            elif starting.exception() is not None:
                self.shutdown.begin("start failed", 1, quiet=True)  # the teardown runs on the budget
                starting.result()
            else:
                await stopping
        finally:
            await self._shutdown()
            await http.cleanup()
        return self.exit_code

    async def _kafka_partitions(self) -> int:
        """The topics' partition count once Kafka answers (the start clock ends the retries at
        STREAMER_START_TIMEOUT_SEC, a stop cancels them)."""
        s = self.settings
        self.start_clock.step = f"reaching Kafka at KAFKA_BOOTSTRAP_SERVERS {s.kafka_bootstrap_servers}"

        def remember(exc: BaseException) -> None:
            self.start_clock.last_error = error_text(exc)

        # Never stopped from inside: a stop cancels the whole start (Worker.run).
        partitions = await wait_for_topics(s, asyncio.Event(), remember, self.start_clock.until())
        assert partitions is not None
        return partitions

    async def _start(self) -> None:
        s = self.settings
        partitions = await self._kafka_partitions()
        redis = self.redis = make_redis(s)
        self.start_clock.step = "opening ClickHouse (CLICKHOUSE_URL)"
        ch = self.ch = await self._clickhouse(partitions)
        self.start_clock.step = "starting the Faust app"
        self.app, table = build_app(s, partitions)
        self.ingestor = self._ingestor(table, partitions)
        publisher = Publisher(self.live, redis, self.ingestor, lambda: self._partitions(partitions),
                              ch, make_stream_reconciler(self.live, ch, redis))
        if self.sink is not None:
            self._spawn(self._sink_after_assignment(self.sink))
        await self.app.start()
        self._spawn(publisher.run(self.stop), self._monitor())
        self._start_jobs(ch, redis)
        freeze_startup_heap()
        log.info("worker running: topic %s with %d partitions", s.kafka_events_topic, partitions)

    async def _sink_after_assignment(self, sink: ClickHouseSinkConsumer) -> None:
        """Join the sink group when the stream group first assigned partitions: workers started
        together get that assignment together, so their sinks join one generation of the sink
        group instead of rebalancing it (and re-reading) when a slower worker's sink joins."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self.assigned, self.stop)]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self.assigned.is_set():
            await sink.run(self.stop)

    async def _clickhouse(self, partitions: int) -> ClickHouse:
        s = self.settings
        ch = ClickHouse.from_settings(s)
        try:
            await create_schema(ch)
        except Exception as exc:
            if ch.embedded:  # nothing will fix a directory we cannot open: fail the start
                raise StartError(f"embedded ClickHouse {s.clickhouse_dsn} cannot be opened (one "
                                 f"process at a time may hold it): {exc}") from None
            log.warning("ClickHouse schema check failed (sink will retry): %s", exc)
        sink_on = s.streamer_clickhouse_sink

        redis = self.redis

        async def insert(rows: SinkRows) -> None:
            await queries.insert_rows(ch, rows)

        engine = ch.engine_id  # embedded: this process's engine gets every partition
        positions_key = sink_positions_key(s.streamer_app_id, engine)

        async def publish_positions(offsets: dict[int, int]) -> None:
            if redis is not None and offsets:
                await redis.hset(positions_key, mapping={str(p): o for p, o in offsets.items()})

        if sink_on:
            self.tap = SinkTap(s.streamer_sink_batch_size, s.streamer_sink_batch_bytes,
                               tap_idle_ms(s.streamer_sink_flush_ms))
            self.sink = ClickHouseSinkConsumer(self.live, partitions, insert, publish_positions,
                                               engine, self.tap)
        return ch

    def _ingestor(self, table: StateTable, partitions: int) -> Ingestor:
        s = self.settings
        app = self.app
        assert app is not None
        producer = app.producer

        async def send_many(items: list[Outgoing]) -> None:
            """One coroutine per batch (not a task per message): enqueue in order, await acks."""
            futures = [await producer.send(topic, key, value, partition, None, headers)
                       for topic, key, value, partition, headers in items]
            await asyncio.gather(*futures)

        def ack(tp: TP, offsets: list[int]) -> None:
            cast(LeanConsumer, app.consumer).ack_offsets(tp, offsets)

        ingestor = Ingestor(TableWriter(table, s.kafka_events_topic), send_many, ack, partitions,
                            s.window_minutes, s.kafka_events_topic, s.kafka_dlq_topic,
                            counting_of(s.job_trending_count, s.job_trending_min_people))
        ingestor.tap = self.tap
        register_batch_handler(app, s.kafka_events_topic, ingestor.handle_batch)
        table.on_recovered = ingestor.on_recovered
        topic = s.kafka_events_topic

        def ours(tps: set[TP]) -> set[int]:
            return {tp.partition for tp in tps if tp.topic == topic}

        async def on_revoked(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
            await ingestor.on_revoked(ours(args[0]))

        async def on_assigned(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
            ingestor.on_assigned(ours(args[0]))
            self.assigned.set()

        app.on_partitions_revoked.connect(on_revoked, weak=False)
        app.on_partitions_assigned.connect(on_assigned, weak=False)
        return ingestor

    def _partitions(self, fallback: int) -> int:
        with contextlib.suppress(Exception):
            assert self.app is not None
            count = self.app.consumer.topic_partitions(self.settings.kafka_events_topic)
            if count:
                return int(count)
        return fallback

    def _spawn(self, *coros: Awaitable[Any]) -> None:
        for coro in coros:
            self.tasks.append(asyncio.ensure_future(coro))

    def _start_jobs(self, ch: ClickHouse, redis: Redis) -> None:
        self.runner = JobRunner([SuggestionsJob(self.live, ch, redis)], redis,
                                self.settings.job_max_concurrent, live=self.live)
        self._spawn(self.runner.run_forever())

    async def readiness(self) -> tuple[bool, str]:
        """Ready when every assigned partition is recovered and Redis answers."""
        ingestor = self.ingestor
        if ingestor is None or not ingestor.ready:
            return False, "partitions not assigned or state not recovered yet"
        assert self.redis is not None
        await self.redis.ping()
        return True, f"partitions {sorted(ingestor.states)} recovered; redis reachable"

    async def _monitor(self) -> None:
        """Exit on fatal errors; keep the per-partition lag gauge current; once a second, hand
        the heap's free pages back (ops/memory.py)."""
        assert self.ingestor is not None and self.app is not None
        while not self.stop.is_set():
            failed = self._failed_task()
            if self.ingestor.fatal is not None or self.app.crashed or failed is not None:
                log.critical("fatal: %r", self.ingestor.fatal or self.app.crash_reason or failed)
                self.exit_code = 1
                self.shutdown.begin("fatal error", 1)
                return
            self._update_lag()
            release_free_heap()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), 1.0)

    def _failed_task(self) -> BaseException | None:
        """The error of a background task (publisher, sink, jobs) that died before the stop."""
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                return task.exception()
        return None

    def _update_lag(self) -> None:
        assert self.ingestor is not None and self.app is not None
        consumer = self.app.consumer
        topic = self.settings.kafka_events_topic
        for partition in list(self.ingestor.states):
            with contextlib.suppress(Exception):
                tp = TP(topic, partition)
                high = consumer.highwater(tp)
                read = faust_compat.read_offsets(consumer).get(tp)
                if high is not None:
                    lag = high - (read + 1 if read is not None else 0)
                    CONSUMER_LAG.labels(partition=str(partition)).set(max(lag, 0))
                    if self.tap is not None:  # the sink's lag of a partition it follows
                        self.tap.stream_ends[partition] = high

    async def _shutdown(self) -> None:
        """The worker's part of the stop sequence, every step bounded by the one budget."""
        log.info("stopping worker")
        ingestor, app, bounded = self.ingestor, self.app, self.shutdown.bounded
        if self.tap is not None:  # the stream stops: the sink fetches what it has not taken
            self.tap.close()
        if self.sink is not None and ingestor is not None:  # before stop: the sink reads it then
            self.sink.drain_to({p: st.next_offset for p, st in ingestor.states.items()
                                if st.next_offset >= 0})
        self.stop.set()
        if self.runner is not None:
            self.runner.stop()
        if app is not None and ingestor is not None:
            if await bounded(ingestor.drain(), DRAIN_STOP_S, "draining the ingest batch"):
                await bounded(ingestor.writer.close(), DRAIN_STOP_S, "closing the table writer")
            await bounded(app.stop(), FAUST_STOP_S, "stopping Faust")
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=self.shutdown.left_s(TASKS_STOP_S))
        for task in self.tasks:
            task.cancel()
        if self.redis is not None:
            await bounded(self.redis.aclose(), 2.0, "closing Redis")
        if self.ch is not None:
            self.ch.close()


async def run_worker(settings: Settings, shutdown: Shutdown) -> int:
    """Entry point of `streamer worker`, run under the stop sequence (streamer.ops.shutdown)."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # `kill -USR1` dumps stacks
    tune_allocator()
    live = LiveSettings(settings)
    worker = Worker(settings, shutdown, live=live)
    worker.tasks.append(start_reloading(live, worker.stop))  # SIGHUP handled from here on
    return await worker.run()
