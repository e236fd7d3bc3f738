"""The library memory defaults the worker overrides (streamer/ops/memory.py) reach the libraries."""

from __future__ import annotations

import gc
import subprocess
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamer.clickhouse import client as ch_client
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.queries import EVENT_COLUMNS, POSITION_COLUMNS, insert_rows
from streamer.core.sink_rows import SinkRows
from streamer.ops.memory import CHDB_PURGE, CHDB_PURGE_AFTER_ROWS, MIB, ROCKSDB_TABLE_OPTIONS
from streamer.settings.model import Settings
from streamer.stream import faust_compat as compat
from streamer.stream.app import build_app

ROOT = Path(__file__).resolve().parents[1]


def rocksdb_options_file(db_path: Path) -> dict[str, str]:
    """The `name=value` lines of the OPTIONS file RocksDB wrote for an open database."""
    files = sorted(db_path.glob("OPTIONS-*"))
    assert files, f"no OPTIONS file in {db_path}"
    out: dict[str, str] = {}
    for line in files[-1].read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep:
            out.setdefault(name, value)
    return out


def test_the_worker_table_opens_rocksdb_with_small_buffers_and_cache(tmp_path: Path) -> None:
    """A partition's database, opened by the worker's app as a record is written, runs with the
    overridden write buffers and block cache, not Faust's 64 MiB x 3 and 2 GiB."""
    settings = Settings(streamer_data_dir=tmp_path, streamer_table_store="rocksdb")
    _, table = build_app(settings, 4)
    store: Any = table.data
    with compat.source_partition(settings.kafka_events_topic, 1):
        store[b"1:w:000000000001"] = b"record"
    options = rocksdb_options_file(Path(store.partition_path(1)))
    assert int(options["write_buffer_size"]) == ROCKSDB_TABLE_OPTIONS["write_buffer_size"] == 4 * MIB
    assert int(options["max_write_buffer_number"]) == ROCKSDB_TABLE_OPTIONS["max_write_buffer_number"]
    db = store._dbs[1]
    assert db.property_int_value("rocksdb.block-cache-capacity") == ROCKSDB_TABLE_OPTIONS["block_cache_size"]
    assert ROCKSDB_TABLE_OPTIONS["block_cache_size"] < 64 * MIB


def sink_rows(n: int, seed: int) -> SinkRows:
    """n valid rows of the sink, ids unique per seed."""
    now_ms = int(time.time() * 1000)
    ints = np.arange(n, dtype=np.int64)
    return SinkRows([f"{seed:08x}{i:024x}" for i in range(n)], ints + 1, ints + 7,
                    (ints % 4).astype(np.uint8), now_ms - ints, np.zeros(n, dtype=np.int32), ints)


async def test_an_insert_leaves_no_columns_behind_for_the_collector(clickhouse: ClickHouse) -> None:
    """clickhouse-connect's insert context sits in a reference cycle; the facade empties the
    columns it handed over, so a batch is freed when the sink drops it, not at the next full
    collection (the collector is off here: only reference counting frees anything)."""
    post_ids = np.arange(1, 1001, dtype=np.uint64)
    freed = weakref.ref(post_ids)
    gc.collect()
    gc.disable()
    try:
        columns = [[f"{i:032x}" for i in range(1000)], post_ids, post_ids, ["view"] * 1000,
                   [int(time.time() * 1000)] * 1000, np.zeros(1000, dtype=np.int32),
                   np.arange(1000, dtype=np.int64)]
        await clickhouse.insert_columns("post_events", columns, EVENT_COLUMNS + POSITION_COLUMNS)
        del columns, post_ids
        assert freed() is None
    finally:
        gc.enable()
    assert (await clickhouse.rows(f"SELECT count() FROM {clickhouse.database}.post_events"))[0][0] == 1000


async def test_embedded_inserts_purge_the_engines_freed_pages(
    clickhouse: ClickHouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CHDB_PURGE_AFTER_ROWS rows inserted, the embedded engine is told to return the pages
    its allocator holds; every row still lands once."""
    client = clickhouse._get()
    sent: list[str] = []
    command = client.command

    def spy(sql: str, *args: Any, **kwargs: Any) -> Any:
        sent.append(sql)
        return command(sql, *args, **kwargs)

    monkeypatch.setattr(client, "command", spy)
    monkeypatch.setattr(ch_client, "CHDB_PURGE_AFTER_ROWS", 1500)
    await insert_rows(clickhouse, sink_rows(1000, 1))
    assert CHDB_PURGE not in sent
    await insert_rows(clickhouse, sink_rows(1000, 2))
    assert sent.count(CHDB_PURGE) == 1
    await insert_rows(clickhouse, sink_rows(1000, 3))
    assert sent.count(CHDB_PURGE) == 1  # counting starts again after a purge
    table = f"{clickhouse.database}.post_events"
    rows = await clickhouse.rows(f"SELECT count(), uniqExact(event_id) FROM {table}")
    assert rows == [(3000, 3000)]
    assert CHDB_PURGE_AFTER_ROWS == 100_000


def test_an_insert_does_not_load_pandas(tmp_path: Path) -> None:
    """The first insert through the facade leaves pandas unloaded (a fresh interpreter: this one
    may have pandas from other tests)."""
    code = (
        "import asyncio, sys\n"
        "from streamer.clickhouse.client import ClickHouse\n"
        "from streamer.clickhouse.schema import create_schema\n"
        "from tests.test_ops_memory import insert_rows, sink_rows\n"
        f"ch = ClickHouse('chdb://{tmp_path}/clickhouse', 'nova', 30000)\n"
        "async def main() -> None:\n"
        "    await create_schema(ch)\n"
        "    await insert_rows(ch, sink_rows(10, 1))\n"
        "    print(len(await ch.rows('SELECT event_id FROM nova.post_events')), 'pandas' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["10", "False"]


RELEASE_PROBE = """
import random
from streamer.ops.memory import release_free_heap, tune_allocator

def anon_kib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("RssAnon")).split()[1])

tune_allocator()
rng = random.Random(5)
blocks = [bytes(rng.randrange(600, 20000)) for _ in range(20000)]  # ~200 MB of heap chunks
kept = blocks[::3]  # every third stays: the freed ones are holes inside the heap, not its top
del blocks
before = anon_kib()
released = release_free_heap()
print(released, before, anon_kib(), len(kept))
"""


def test_release_free_heap_returns_the_holes_freed_inside_the_heap() -> None:
    """Chunks freed between live ones stay resident under the trim threshold; the release
    hands their pages back (here ~130 of ~200 MB)."""
    out = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.split()
    released, before_kib, after_kib = out[0] == "True", int(out[1]), int(out[2])
    assert released
    assert before_kib - after_kib > 64 * 1024
