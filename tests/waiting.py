"""The one way tests wait: poll a condition until it holds or a deadline passes.

Fixed sleeps are not synchronisation; every wait in the suite goes through these helpers.
`ignoring`: exception types that count as "not yet" (a server still starting or failing over).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Check = Callable[[], Any]  # returns a truthy value when done (or an awaitable of one)
Errors = tuple[type[BaseException], ...]


def wait_until(check: Check, timeout_s: float, what: str, step_s: float = 0.1,
               ignoring: Errors = ()) -> float:
    """Poll a condition; seconds it took; AssertionError naming `what` on timeout."""
    started = time.monotonic()
    while not _holds_now(check, ignoring):
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        time.sleep(step_s)
    return time.monotonic() - started


async def await_until(check: Check, timeout_s: float, what: str, step_s: float = 0.1,
                      ignoring: Errors = ()) -> float:
    """Async twin of wait_until (the loop runs while it waits); check may be a coroutine function."""
    started = time.monotonic()
    while not await _holds(check, ignoring):
        assert time.monotonic() - started < timeout_s, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(step_s)
    return time.monotonic() - started


def _holds_now(check: Check, ignoring: Errors) -> bool:
    try:
        return bool(check())
    except ignoring:
        return False


async def _holds(check: Check, ignoring: Errors = ()) -> bool:
    try:
        result = check()
        if inspect.isawaitable(result):
            result = await result
    except ignoring:
        return False
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
