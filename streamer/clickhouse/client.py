"""One async facade over clickhouse-connect that works the same on chDB and on HTTP servers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect

from streamer.errors import StreamerError
from streamer.ops.memory import CHDB_PURGE, CHDB_PURGE_AFTER_ROWS, clickhouse_connect_without_pandas
from streamer.redaction import mask_url
from streamer.settings.model import Settings

log = logging.getLogger("streamer.clickhouse")
# chDB allows one session per directory per process: share clients by DSN.
_EMBEDDED: dict[str, Any] = {}
_EMBEDDED_GUARD = threading.Lock()
ENGINE_ID_FILE = "streamer-engine-id"


def embedded_engine_id(path: Path) -> str:
    """The id stored in an embedded engine's directory, written at its first use."""
    id_file = path / ENGINE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return id_file.read_text().strip()
    path.mkdir(parents=True, exist_ok=True)
    engine = uuid.uuid4().hex[:12]
    tmp = id_file.with_suffix(".tmp")
    tmp.write_text(engine + "\n")
    tmp.replace(id_file)  # a crash leaves the old state or the whole id, never half
    return engine


class ClickHouseError(StreamerError):
    """Raised when ClickHouse is unreachable, times out or rejects a query."""


def _connect(dsn: str, timeout_s: float) -> Any:
    """Open a clickhouse-connect client for an http(s):// or chdb:// DSN."""
    clickhouse_connect_without_pandas()
    if dsn.startswith("chdb://"):
        with _EMBEDDED_GUARD:
            client = _EMBEDDED.get(dsn)
            if client is None:
                path = dsn.removeprefix("chdb://")
                import os

                os.makedirs(path, exist_ok=True)
                client = clickhouse_connect.get_client(dsn=dsn)
                _EMBEDDED[dsn] = client
            return client
    parts = urlsplit(dsn)
    return clickhouse_connect.get_client(
        host=parts.hostname,
        port=parts.port or (8443 if parts.scheme == "https" else 8123),
        username=parts.username or "default",
        password=parts.password or "",
        secure=parts.scheme == "https",
        connect_timeout=timeout_s,
        send_receive_timeout=timeout_s,
    )


class ClickHouse:
    """Runs queries off the event loop, one at a time per client, with a timeout."""

    def __init__(self, dsn: str, database: str, timeout_ms: int) -> None:
        self.dsn = dsn
        self.database = database
        self.timeout_ms = timeout_ms
        self._client: Any = None
        self._lock = threading.Lock()
        self._rows_since_purge = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ClickHouse:
        """Client for the configured ClickHouse."""
        return cls(settings.clickhouse_dsn, settings.clickhouse_database, settings.job_ch_timeout_ms)

    @property
    def embedded(self) -> bool:
        """True for the in-process chDB engine."""
        return self.dsn.startswith("chdb://")

    @property
    def engine_id(self) -> str | None:
        """An embedded engine's lasting name (kept in its directory), None for a server: each
        embedded engine is a whole copy fed by a sink group of its own (`sink_group`)."""
        if not self.embedded:
            return None
        return embedded_engine_id(Path(self.dsn.removeprefix("chdb://")))

    def _settings(self) -> dict[str, Any]:
        # Server-side limit at the configured precision (ClickHouse takes fractional seconds).
        seconds = self.timeout_ms // 1000 if self.timeout_ms % 1000 == 0 else self.timeout_ms / 1000
        return {"max_execution_time": seconds}

    def _get(self) -> Any:
        if self._client is None:
            self._client = _connect(self.dsn, self.timeout_ms / 1000)
        return self._client

    def _call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return getattr(self._get(), fn)(*args, **kwargs)
            except Exception as exc:
                self._client = None if not self.embedded else self._client
                raise ClickHouseError(
                    f"ClickHouse {mask_url(self.dsn)}: {type(exc).__name__}: {str(exc)[:300]}"
                ) from exc

    def _insert_call(self, table: str, data: list[Any], **kwargs: Any) -> Any:
        """Insert, then empty `data` in the same thread: clickhouse-connect's insert context keeps
        it in a reference cycle (the context's bound `_next_block_data`), so the batch's columns
        would stay resident until a full collection of the garbage collector."""
        rows = len(data[0]) if kwargs.get("column_oriented") else len(data)
        try:
            return self._call("insert", table, data, **kwargs)
        finally:
            data.clear()
            self._after_insert(rows)

    def _after_insert(self, rows: int) -> None:
        """Embedded: hand the engine's freed memory back to the system every CHDB_PURGE_AFTER_ROWS
        rows inserted (its allocator keeps an insert's freed pages for seconds, ~60 B per row)."""
        if not self.embedded:
            return
        self._rows_since_purge += rows
        if self._rows_since_purge < CHDB_PURGE_AFTER_ROWS:
            return
        self._rows_since_purge = 0
        try:
            self._call("command", CHDB_PURGE)
        except ClickHouseError as exc:  # memory only: the insert itself went through
            log.debug("%s failed: %s", CHDB_PURGE, exc)

    async def _run(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        timeout_s = self.timeout_ms / 1000 + 1
        call = self._insert_call if fn == "insert" else functools.partial(self._call, fn)
        try:
            return await asyncio.wait_for(asyncio.to_thread(call, *args, **kwargs), timeout_s)
        except TimeoutError:
            raise ClickHouseError(f"ClickHouse query timed out after {self.timeout_ms} ms") from None

    async def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        """Run DDL or a statement without rows."""
        return await self._run("command", sql, parameters=parameters, settings=self._settings())

    async def rows(self, sql: str, parameters: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a SELECT and return its rows."""
        result = await self._run("query", sql, parameters=parameters, settings=self._settings())
        return list(result.result_rows)

    async def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str]) -> None:
        """Insert rows into database.table."""
        if rows:
            # Valid events may carry any past timestamp (late, replayed): one batch can span
            # more than the default 100 daily partitions, which must not fail the insert.
            settings = {**self._settings(), "max_partitions_per_insert_block": 0}
            await self._run(
                "insert", table, list(rows), column_names=list(columns), database=self.database,
                settings=settings,
            )

    async def insert_columns(
        self, table: str, columns: Sequence[Any], names: Sequence[str]
    ) -> None:
        """Insert parallel columns (lists or numpy arrays of one length) into database.table."""
        if len(columns[0]):
            settings = {**self._settings(), "max_partitions_per_insert_block": 0}
            await self._run(
                "insert", table, list(columns), column_names=list(names), database=self.database,
                settings=settings, column_oriented=True,
            )

    def close(self) -> None:
        """Close an HTTP client (embedded clients live for the process)."""
        if self._client is not None and not self.embedded:
            self._client.close()
        self._client = None
