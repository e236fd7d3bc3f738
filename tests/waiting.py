"""The one way tests wait: poll a condition until it holds or a deadline passes.

Fixed sleeps are not synchronisation; every wait in the suite goes through these two.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Check = Callable[[], Any]  # returns a truthy value when done (or an awaitable of one)


def wait_until(check: Check, timeout_s: float, what: str, step_s: float = 0.1) -> float:
    """Poll a condition; seconds it took; AssertionError naming `what` on timeout."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(step_s)
    return time.monotonic() - started


async def await_until(check: Check, timeout_s: float, what: str, step_s: float = 0.1) -> float:
    """Async twin of wait_until (the loop runs while it waits); check may be a coroutine function."""
    started = time.monotonic()
    while not await _holds(check):
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(step_s)
    return time.monotonic() - started


async def _holds(check: Check) -> bool:
    result = check()
    if inspect.isawaitable(result):
        result = await result
    return bool(result)


async def value_when(produce: Callable[[], Awaitable[Any]], accept: Callable[[Any], bool],
                     timeout_s: float, what: str, step_s: float = 0.1) -> Any:
    """Poll an async producer until accept(value); the accepted value (AssertionError on timeout)."""
    started = time.monotonic()
    while True:
        value = await produce()
        if accept(value):
            return value
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(step_s)


def catches(pid: int, signum: int) -> bool:
    """True once process `pid` has a handler for `signum` (Linux /proc): it is ready for it."""
    try:
        status = open(f"/proc/{pid}/status").read()  # noqa: SIM115 - read at once
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in status.splitlines()
                 if line.startswith("SigCgt:")), 0)
    return bool(mask >> (signum - 1) & 1)
