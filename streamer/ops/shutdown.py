"""The one stop sequence of every long-running command, with one time budget.

The sequence (docs/OPERATIONS.md, "Stopping"):

1. The first SIGTERM or SIGINT (or a failed start, or a fatal error) *begins* the stop: a
   watchdog thread is armed that ends the process with `os._exit` when the budget
   (`STOP_BUDGET_S`, 55 s; the contract allows 60 s) runs out, whatever the event loop, a
   library or a non-daemon thread is doing; then the command's stop event is set.
2. The command stops its parts in order. Every wait in that order is bounded by
   `Shutdown.left_s(cap_s)`: its own cap, but never more than what is left of the one budget.
3. A command that does not watch the stop event (schema, sample, top, `jobs --once`) is
   cancelled after `QUICK_STOP_S`.
4. A second signal ends the process at once (after the `on_force` hooks, e.g. the demo kills
   the process groups it started).

The exit code is 0 for a stop asked by a signal and the command's own code otherwise; the
watchdog exits with the code decided so far (non-zero after a failed start). The watchdog is
never disarmed once armed: it also covers the interpreter's own teardown (pending tasks, the
default executor, non-daemon threads), where a worker once hung for 40 minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

log = logging.getLogger("streamer.shutdown")

STOP_BUDGET_S = 55.0  # the contract allows 60 s from SIGTERM to exit
QUICK_STOP_S = 5.0  # commands that do not watch their stop event are abandoned after this
CANCEL_WAIT_S = 3.0  # a cancelled task gets this long to unwind (libraries can swallow cancels)
DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_HARD_EXIT = [True]  # False once a command ran in-process (cli.main(argv) from a test)


def set_hard_exit(enabled: bool) -> None:
    """Whether watchdogs may end the process: only in a process of its own (the console
    script), never when a command runs inside another program such as a test runner."""
    _HARD_EXIT[0] = enabled


# Maps an exception of a failed command to (exit code, one line for stderr); None = a bug.
Describe = Callable[[BaseException], "tuple[int, str] | None"]


class Shutdown:
    """Owns the stop event, the signal handlers and the watchdog of one process."""

    def __init__(self, budget_s: float = STOP_BUDGET_S,
                 signals: Sequence[signal.Signals] = DEFAULT_SIGNALS) -> None:
        self.budget_s = budget_s
        self.signals = tuple(signals)
        self.stop = asyncio.Event()
        self.reason = ""
        self.exit_code = 0
        self.signalled = ""
        self._deadline: float | None = None
        self._timer: threading.Timer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()
        self._on_signal: list[Callable[[str], None]] = []
        self._on_force: list[Callable[[], None]] = []

    def on_signal(self, hook: Callable[[str], None]) -> None:
        """Call hook(signal name) on every signal, before the stop begins (e.g. log it)."""
        self._on_signal.append(hook)

    def on_force(self, hook: Callable[[], None]) -> None:
        """Call hook() just before a forced exit (second signal or budget spent)."""
        self._on_force.append(hook)

    def install(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Plain signal handlers: they run between bytecodes even while the loop is busy.

        Installed once before the slow imports (loop None) and again when the loop runs, so a
        signal that arrives while the command is still loading begins the stop, too.
        """
        self._loop = loop
        for sig in self.signals:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        for hook in self._on_signal:
            with contextlib.suppress(Exception):
                hook(name)
        if self.signalled:
            self._force(f"second signal ({name})")
        self.signalled = name
        self.begin(name, 0)

    def begin(self, reason: str, exit_code: int | None = None, quiet: bool = False) -> None:
        """Start the stop (idempotent): arm the watchdog, set the stop event; thread-safe.

        quiet: a failure whose one line was (or will be) printed already; log nothing more.
        """
        with self._lock:  # re-entrant: a signal may arrive while the main thread is in here
            if exit_code is not None and not self.exit_code:
                self.exit_code = exit_code
            first = self._deadline is None
            if first:
                self.reason = reason
                self._deadline = time.monotonic() + self.budget_s
                self._timer = threading.Timer(self.budget_s, self._force,
                                              (f"stop did not finish within {self.budget_s:.0f} s",))
                self._timer.daemon = True
                self._timer.start()
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop logs: no I/O in a signal handler
                self._loop.call_soon_threadsafe(self._announce, reason if first and not quiet else "")
                return
        self._announce(reason if first and not quiet else "")

    def _announce(self, reason: str) -> None:
        if reason:
            log.info("stopping (%s): %.0f s budget", reason, self.budget_s)
        self.stop.set()

    @property
    def begun(self) -> bool:
        """True once the stop has begun."""
        return self._deadline is not None

    def left_s(self, cap_s: float) -> float:
        """How long the next stop step may take: its cap, bounded by what is left of the budget."""
        if self._deadline is None:
            return cap_s
        return max(0.0, min(cap_s, self._deadline - time.monotonic()))

    async def bounded(self, step: Awaitable[Any], cap_s: float, what: str) -> bool:
        """Await one stop step for at most left_s(cap_s); False (logged) when it ran out."""
        task = asyncio.ensure_future(step)
        done, _ = await asyncio.wait({task}, timeout=self.left_s(cap_s))
        if not done:
            log.warning("%s did not finish in time; going on without it", what)
            task.cancel()
            await asyncio.wait({task}, timeout=min(CANCEL_WAIT_S, self.left_s(CANCEL_WAIT_S)))
            return False
        exc = None if task.cancelled() else task.exception()
        if task.cancelled() or exc is not None:
            log.warning("%s failed: %s", what, "cancelled" if exc is None else f"{type(exc).__name__}: {exc}")
            return False
        return True

    def _force(self, why: str) -> None:
        """Run the force hooks and end the process now with the exit code decided so far."""
        log.error("%s: forcing exit", why)
        for hook in self._on_force:
            with contextlib.suppress(Exception):
                hook()
        if not _HARD_EXIT[0]:
            return  # in-process run: the host program (a test runner) must survive
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(self.exit_code)


def run_command(
    main: Callable[[Shutdown], Coroutine[Any, Any, int]],
    describe: Describe,
    watches_stop: bool = True,
    shutdown: Shutdown | None = None,
) -> int:
    """asyncio.run(main(shutdown)) under the stop sequence; a described failure is one line."""
    sd = shutdown if shutdown is not None else Shutdown()

    async def wrapper() -> int:
        sd.install(asyncio.get_running_loop())
        if sd.begun:  # a signal arrived while the command was still loading: nothing to start
            return sd.exit_code
        work = asyncio.ensure_future(main(sd))
        stopped = asyncio.ensure_future(sd.stop.wait())
        await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not work.done():
            await asyncio.wait({work}, timeout=sd.left_s(sd.budget_s if watches_stop else QUICK_STOP_S))
        if not work.done():
            work.cancel()
            await asyncio.wait({work}, timeout=sd.left_s(CANCEL_WAIT_S))
            return sd.exit_code
        if work.cancelled():  # a library cancelled it while stopping: the stop's own code
            return sd.exit_code
        exc = work.exception()
        if exc is None:
            code = work.result()
            if code:
                sd.begin(f"exit code {code}", code, quiet=True)  # a failure's teardown is bounded too
            return code
        return fail(sd, exc, describe)

    return asyncio.run(wrapper())


def fail(sd: Shutdown, exc: BaseException, describe: Describe) -> int:
    """Print the one line of a described failure and begin the stop with its code; else re-raise."""
    described = describe(exc)
    if described is None:
        sd.begin(f"unexpected {type(exc).__name__}", 1)
        raise exc
    code, line = described
    print(line, file=sys.stderr, flush=True)
    sd.begin(f"exit code {code}", code, quiet=True)
    return code
