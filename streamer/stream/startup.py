"""Start checks of the worker: every way a start can fail becomes one `StartError` line that
names the variable or path at fault (docs/OPERATIONS.md, "Failed starts")."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from streamer.errors import StartError, StreamerError
from streamer.ops.logging import error_text, iso_ms

T = TypeVar("T")


def prepare_data_dir(path: Path) -> Path:
    """Create STREAMER_DATA_DIR (parents included) and prove it is a writable directory."""
    where = path.resolve()
    try:
        if where.exists() and not where.is_dir():
            raise StartError(f"STREAMER_DATA_DIR {where}: exists and is not a directory")
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".write-check-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StartError(f"STREAMER_DATA_DIR {where}: cannot create or write it "
                         f"({exc.strerror or type(exc).__name__})") from None
    return where


def as_start_error(exc: BaseException, step: str) -> StreamerError:
    """A failure of start step `step` as one line (errors we raise on purpose pass unchanged)."""
    if isinstance(exc, StreamerError):
        return exc
    return StartError(f"worker start failed while {step}: {error_text(exc)}")


class StartClock:
    """The start's one deadline (STREAMER_START_TIMEOUT_SEC) and the step in progress."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.step = "starting"
        self.last_error = ""
        self.started_ms = time.time() * 1000

    def until(self) -> str:
        """`until <ISO time> (STREAMER_START_TIMEOUT_SEC=N)`: when the start gives up."""
        deadline = iso_ms(int(self.started_ms + self.timeout_s * 1000) // 1000 * 1000)
        return f"until {deadline} (STREAMER_START_TIMEOUT_SEC={self.timeout_s:.0f})"

    def timed_out(self) -> StartError:
        """The error of a start that did not finish in time, naming the step and the variable."""
        why = f" (last error: {self.last_error})" if self.last_error else ""
        return StartError(f"start did not finish within {self.timeout_s:.0f} s "
                          f"(STREAMER_START_TIMEOUT_SEC) while {self.step}{why}")

    async def run(self, start: Awaitable[T]) -> T:
        """Await the whole start; a start over time is cancelled and fails with timed_out()."""
        task = asyncio.ensure_future(start)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout_s)
        except asyncio.CancelledError:  # a stop during the start: the start must stop, too
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait({task}, timeout=3.0)
            raise
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait({task}, timeout=3.0)
            raise self.timed_out()
        exc = task.exception()
        if exc is not None:
            raise as_start_error(exc, self.step) from None
        return task.result()
