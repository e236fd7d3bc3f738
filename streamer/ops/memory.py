"""Process memory habits of a long-running worker: allocator thresholds, free heap handed back
every second, a frozen start-up heap, and every library memory default the worker overrides
(the RocksDB table store's buffers, the embedded ClickHouse's freed pages, clickhouse-connect's
pandas import)."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
from typing import Any

log = logging.getLogger("streamer.ops.memory")
# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Batch temporaries (decoded columns, fetched buffers) of 128 KiB and more get their own
# mappings and go back to the system when freed; free heap above this is trimmed. glibc's
# default raises the mmap threshold to up to 32 MiB after the first big free, after which
# such temporaries stay in the heap and the resident size only grows.
THRESHOLD_BYTES = 128 * 1024
MIB = 1024 * 1024
# Faust's RocksDB store (faust.stores.rocksdb) opens each partition's database with 64 MiB
# write buffers (up to 3 of them) and a 2 GiB block cache, sized for big tables read often.
# The worker writes one small record per fetched batch (~20-25 B per event) and reads them back
# only when it rebuilds a partition at start: with 64 MiB memtables a whole window's records
# stayed in RAM, and a rebuild would fill a cache of up to 2 GiB per partition. Smaller
# memtables flush the records to disk as the window fills; the cache bounds what a rebuild
# leaves resident. Passed as the table's `options` (faust hands them to RocksDBOptions).
ROCKSDB_TABLE_OPTIONS: dict[str, int] = {
    "write_buffer_size": 4 * MIB,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * MIB,
}
# The embedded ClickHouse (chDB) allocates with its own jemalloc, which keeps the pages an insert
# freed for seconds before it returns them (the tracked memory is a few MiB; ~60 B per inserted
# row stays resident at the sink's rate). The embedded client purges them every this many rows.
CHDB_PURGE = "SYSTEM JEMALLOC PURGE"
CHDB_PURGE_AFTER_ROWS = 100_000


def clickhouse_connect_without_pandas() -> None:
    """Put clickhouse-connect in its "pandas not installed" state. pandas comes with chdb, and
    clickhouse-connect imports it at the first insert only to ask whether the data is a
    DataFrame (it never is here): ~40 MiB of heap and ~45 MiB of library pages per process."""
    from clickhouse_connect.driver import options

    options.pd = None
    options.pd_time_test = None


def _libc_function(name: str) -> Any | None:
    """A glibc function by name, or None (another C library, or none found)."""
    lib = ctypes.util.find_library("c")
    if lib is None:
        return None
    try:
        return getattr(ctypes.CDLL(lib), name)
    except (OSError, AttributeError):
        return None


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (no-op elsewhere); True when applied."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = int(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) == 1
    ok = int(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)) == 1 and ok
    log.debug("mallopt thresholds %s", "set" if ok else "refused")
    return ok


def release_free_heap() -> bool:
    """Hand the free pages inside glibc's heaps back to the system (malloc_trim(0)); True when
    some were. The trim threshold only returns free memory at a heap's top: the fetched
    messages and batch temporaries freed in the middle of the main heap and of the consumer
    thread's arena stayed resident (~185 B per new post and ~75 B per event with the memory
    store, by glibc's own count). A few ms per call; the worker calls it once a second."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return int(trim(0)) == 1


def freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, app, clients) out of the collector's reach:
    later collections walk only what the stream allocates."""
    gc.collect()
    gc.freeze()
