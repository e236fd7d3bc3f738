"""Process memory habits of a long-running worker: allocator thresholds and a frozen start-up heap."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

log = logging.getLogger("streamer.ops.memory")
# glibc mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Batch temporaries (decoded columns, fetched buffers) of 128 KiB and more get their own
# mappings and go back to the system when freed; free heap above this is trimmed. glibc's
# default raises the mmap threshold to up to 32 MiB after the first big free, after which
# such temporaries stay in the heap and the resident size only grows.
THRESHOLD_BYTES = 128 * 1024


def tune_allocator() -> bool:
    """Fix glibc's mmap and trim thresholds (no-op elsewhere); True when applied."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = int(mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES)) == 1
    ok = int(mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES)) == 1 and ok
    log.debug("mallopt thresholds %s", "set" if ok else "refused")
    return ok


def freeze_startup_heap() -> None:
    """Move what start-up allocated (modules, app, clients) out of the collector's reach:
    later collections walk only what the stream allocates."""
    gc.collect()
    gc.freeze()
