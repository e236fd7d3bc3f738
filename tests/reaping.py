"""Every child process group the tests start is reaped, however the test process ends.

Services and workers run in their own sessions (a signal to the test's group must not reach
them before the test says so), so nothing kills them when pytest dies. `Reaper` wraps
`subprocess.Popen` for the session: each child that leads its own session is registered with a
watchdog process (streamer.demo.services.Watchdog) that kills the registered groups when the
pipe from pytest closes without a goodbye (pytest killed, even by SIGKILL); at a normal end,
whatever a test left running is killed here, then the watchdog is told goodbye.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from typing import Any

from streamer.demo.services import Watchdog, kill_group


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
                super().__init__(*args, **kwargs)
                if kwargs.get("start_new_session") or kwargs.get("process_group") == 0:
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
