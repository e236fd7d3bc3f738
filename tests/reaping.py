"""Every child process group the tests start is reaped, however the test process ends.

Services and workers run in their own sessions (a signal to the test's group must not reach
them before the test says so), so nothing kills them when pytest dies. `Reaper` wraps
`subprocess.Popen` for the session: each child that leads its own session is registered with a
watchdog process (streamer.demo.services.Watchdog) that kills the registered groups when the
pipe from pytest closes without a goodbye (pytest killed, even by SIGKILL); at a normal end,
whatever a test left running is killed here, then the watchdog is told goodbye. Every other
child shares our process group, which the watchdog must not kill (under xdist it is the whole
run's): the kernel kills it when the thread that started it dies (PR_SET_PDEATHSIG), so a
child started from a thread must not outlive that thread (asyncio.to_thread's threads live
as long as the test's event loop).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from typing import Any

from streamer.demo.services import Watchdog, kill_group

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(then: Callable[[], object] | None) -> Callable[[], None]:
    """A preexec_fn: the child gets SIGKILL when its parent dies (even if it already did)."""
    parent = os.getpid()

    def preexec() -> None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died between fork and prctl
            os.kill(os.getpid(), signal.SIGKILL)
        if then is not None:
            then()

    return preexec


class Reaper:
    """Registers own-session children with a watchdog while installed."""

    def __init__(self) -> None:
        self.original = subprocess.Popen
        self.watchdog = Watchdog()
        self.children: list[subprocess.Popen[Any]] = []
        self.lock = threading.Lock()

    def install(self) -> None:
        """Make subprocess.Popen (and so asyncio subprocesses) register their own-session children."""
        reaper = self
        original: Any = self.original

        class ReapedPopen(original):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                own_group = kwargs.get("start_new_session") or kwargs.get("process_group") == 0
                if not own_group:
                    kwargs["preexec_fn"] = die_with_parent(kwargs.get("preexec_fn"))
                super().__init__(*args, **kwargs)
                if own_group:
                    reaper.adopt(self)

        subprocess.Popen = ReapedPopen  # type: ignore[misc]

    def adopt(self, proc: subprocess.Popen[Any]) -> None:
        """Kill this child's group if the test process dies."""
        with self.lock:
            self.children = [c for c in self.children if c.poll() is None]
            self.children.append(proc)
        self.watchdog.register(proc.pid)

    def close(self) -> list[str]:
        """Kill what tests left running, restore Popen, let the watchdog go; the leaked ones."""
        subprocess.Popen = self.original  # type: ignore[misc]
        leaked = []
        with self.lock:
            for proc in self.children:
                if proc.poll() is None:
                    leaked.append(" ".join(map(str, proc.args)) if isinstance(proc.args, list)
                                  else str(proc.args))
                    kill_group(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(10)
        self.watchdog.close()
        return leaked
