"""Configuration reload without restart: the live holder, the file watcher, SIGHUP, metrics.

Components that tune themselves live take a `LiveSettings` where they took a `Settings` and
read `live.current` once at the start of each tick, run or batch, so a reload never lands
half-way through one. A reload validates the whole new configuration with the start-up rules
(`load_settings`); a rejected one leaves the running configuration as it was. Only the
settings in `settings.file.RELOADABLE` change; the others are reported as needing a restart.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from streamer.errors import ConfigError
from streamer.ops.logging import setup_logging
from streamer.ops.metrics import CONFIG_GENERATION, CONFIG_RELOADS, CONFIG_RESTART_PENDING
from streamer.settings.file import ConfigDiff, diff_settings, file_path
from streamer.settings.model import Settings, load_settings

log = logging.getLogger("streamer.config")
CONFIG_POLL_S = 1.0  # a change is acted on after two equal reads: within ~2 s, well under 10 s
RESULTS = ("applied", "rejected", "unchanged")


class LiveSettings:
    """The latest valid Settings of a running process and its generation (1 at start)."""

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self._current = settings
        self.generation = 1
        self.env = dict(os.environ if env is None else env)  # the process environment at start
        self.hup = asyncio.Event()  # set by SIGHUP, consumed by the watcher
        self.restart_pending: dict[str, tuple[object, object]] = {}
        self._changed = asyncio.Event()

    @property
    def current(self) -> Settings:
        """The configuration in force now; read it once per tick / run / batch."""
        return self._current

    async def wait(self, stop: asyncio.Event, timeout_s: float) -> None:
        """Sleep until timeout_s passed, stop is set or a reload applied (to re-plan a wait)."""
        await wait_any((stop, self._changed), timeout_s)

    def reload(self, why: str) -> str:
        """Load and validate the configuration again; apply the reloadable changes; the result."""
        try:
            new = load_settings(self.env)
        except ConfigError as exc:
            CONFIG_RELOADS.labels(result="rejected").inc()
            # load_settings names the file and line of every value that came from the file
            log.error("config reload (%s) rejected, generation %d stays: %s",
                      why, self.generation, exc)
            return "rejected"
        diff = diff_settings(self._current, new, type(new).model_fields)
        self._report_restart_only(diff)
        if not diff.reloadable:
            CONFIG_RELOADS.labels(result="unchanged").inc()
            log.info("config reload (%s): nothing to apply, generation %d stays",
                     why, self.generation)
            return "unchanged"
        self._apply(diff, why)
        return "applied"

    def _apply(self, diff: ConfigDiff, why: str) -> None:
        update = {name: new for name, (_, new) in diff.reloadable.items()}
        self._current = self._current.model_copy(update=update)
        self.generation += 1
        CONFIG_GENERATION.set(self.generation)
        CONFIG_RELOADS.labels(result="applied").inc()
        if "log_level" in update:
            setup_logging(self._current.log_level, self._current.log_format)
        log.warning("config reload (%s) applied, generation %d: %s",
                    why, self.generation, diff.describe())
        self._changed.set()  # wake the waiters, then arm a fresh event for the next reload
        self._changed = asyncio.Event()

    def _report_restart_only(self, diff: ConfigDiff) -> None:
        """Log and count restart-only settings whose configured value is not the running one."""
        self.restart_pending = dict(diff.restart_only)
        CONFIG_RESTART_PENDING.set(len(diff.restart_only))
        if diff.restart_only:
            log.warning("config: %s changed, needs a restart (not applied)",
                        diff.describe(diff.restart_only))


async def wait_any(events: Sequence[asyncio.Event], timeout_s: float) -> None:
    """Return when any event is set or timeout_s passed."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=max(timeout_s, 0), return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()


def live_of(settings: Settings | LiveSettings) -> LiveSettings:
    """A holder for either: a plain Settings becomes a holder that never reloads."""
    return settings if isinstance(settings, LiveSettings) else LiveSettings(settings, {})


def _read(path: str) -> bytes | None:
    """The file's bytes, None while it cannot be read (e.g. being replaced)."""
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


async def watch(live: LiveSettings, stop: asyncio.Event, poll_s: float = CONFIG_POLL_S) -> None:
    """Until stop: reload on SIGHUP, and when the file's content changed and then held still
    for one poll (an editor or a copy may be half-way through writing it)."""
    path = file_path(live.env)
    seen = _read(path) if path else None
    candidate: bytes | None = None
    has_candidate = False
    while not stop.is_set():
        await wait_any((stop, live.hup), poll_s)
        if stop.is_set():
            return
        if live.hup.is_set():
            live.hup.clear()
            seen, has_candidate = (_read(path) if path else None), False
            live.reload("SIGHUP")
            continue
        now = _read(path) if path else seen
        if now == seen:
            has_candidate = False
        elif not has_candidate or now != candidate:
            candidate, has_candidate = now, True
        else:
            seen, has_candidate = now, False
            live.reload(f"{path} changed")


def start_reloading(live: LiveSettings, stop: asyncio.Event) -> asyncio.Task[None]:
    """Export the config metrics, route SIGHUP to the watcher, start it; returns its task."""
    for result in RESULTS:
        CONFIG_RELOADS.labels(result=result)
    CONFIG_GENERATION.set(live.generation)
    CONFIG_RESTART_PENDING.set(0)
    asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, live.hup.set)
    return asyncio.ensure_future(watch(live, stop))
