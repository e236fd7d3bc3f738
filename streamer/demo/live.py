"""How the demo talks to the screen: a rich live view on a terminal, plain progress lines
otherwise (what is shown is computed in `streamer.demo.dashboard`)."""

from __future__ import annotations

import contextlib
import sys
import time
from datetime import UTC, datetime
from typing import Any, Protocol

from rich.console import Console, RenderableType
from rich.live import Live
from rich.padding import Padding
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.text import Text

from streamer.demo.dashboard import DemoState, plain_line, render


class View(Protocol):
    """How the runner talks to the screen."""

    def step(self, text: str) -> None: ...
    def ok(self, text: str) -> None: ...
    def info(self, text: str) -> None: ...
    def error(self, text: str) -> None: ...
    def progress(self, label: str, done: int, total: int) -> None: ...
    def live_start(self, state: DemoState) -> None: ...
    def live_update(self, state: DemoState) -> None: ...
    def live_stop(self) -> None: ...
    def table(self, renderable: RenderableType, plain: list[str]) -> None: ...
    def lines(self, lines: list[str]) -> None: ...


class RichView:
    """Terminal view: spinners for steps, a progress bar for long ones, a live dashboard."""

    def __init__(self) -> None:
        self.console = Console()
        self._status: Any = None
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._live: Live | None = None

    def _end_transient(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
        if self._progress is not None:
            self._progress.stop()
            self._progress, self._task = None, None

    def step(self, text: str) -> None:
        """A step begins (spinner until the next message)."""
        self._end_transient()
        self._status = self.console.status(text)
        self._status.start()

    def ok(self, text: str) -> None:
        """A step finished well."""
        self._end_transient()
        self.console.print(f"[green]✓[/] {text}")

    def info(self, text: str) -> None:
        """A note for the reader."""
        self._end_transient()
        self.console.print(f"  {text}", highlight=False)

    def error(self, text: str) -> None:
        """Something failed; says what and where to look."""
        self._end_transient()
        self.console.print(f"[bold red]✗[/] {text}", highlight=False)

    def progress(self, label: str, done: int, total: int) -> None:
        """Progress of a long step."""
        if self._progress is None or self._task is None:
            self._end_transient()
            self._progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                      TextColumn("{task.completed:,}/{task.total:,}"),
                                      TimeElapsedColumn(), console=self.console, transient=True)
            self._progress.start()
            self._task = self._progress.add_task(label, total=total)
        self._progress.update(self._task, description=label, completed=done, total=total)

    def live_start(self, state: DemoState) -> None:
        """Switch to the dashboard."""
        self._end_transient()
        self._live = Live(render(state, self.console.width), console=self.console, refresh_per_second=4)
        self._live.start()

    def live_update(self, state: DemoState) -> None:
        """Redraw the dashboard."""
        if self._live is not None:
            self._live.update(render(state, self.console.width))

    def live_stop(self) -> None:
        """Leave the dashboard on screen as it last was."""
        if self._live is not None:
            self._live.stop()
            self._live = None
        self._end_transient()

    def table(self, renderable: RenderableType, plain: list[str]) -> None:
        """Print a table (the rich one here)."""
        self._end_transient()
        self.console.print(renderable)

    def lines(self, lines: list[str]) -> None:
        """Print sentences, wrapped at word boundaries to the terminal width."""
        self._end_transient()
        for line in lines:
            indent = len(line) - len(line.lstrip())
            text = Text(line.lstrip(), no_wrap=False)
            self.console.print(Padding(text, (0, 0, 0, indent), expand=False), highlight=False)


class PlainView:
    """Non-terminal view: one timestamped line per step and every few seconds during traffic."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.every_s = every_s
        self._last_line = 0.0
        self._last_progress: dict[str, float] = {}

    def _print(self, text: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"{stamp} {text}", flush=True)

    def step(self, text: str) -> None:
        """A step begins."""
        self._print(f"... {text}")

    def ok(self, text: str) -> None:
        """A step finished well."""
        self._print(f"ok  {text}")

    def info(self, text: str) -> None:
        """A note for the reader."""
        self._print(f"    {text}")

    def error(self, text: str) -> None:
        """Something failed."""
        self._print(f"ERROR {text}")

    def progress(self, label: str, done: int, total: int) -> None:
        """Progress of a long step, at most once a second per step."""
        now = time.monotonic()
        if done >= total or now - self._last_progress.get(label, 0.0) >= 1.0:
            self._last_progress[label] = now
            self._print(f"    {label}: {done:,}/{total:,}")

    def live_start(self, state: DemoState) -> None:
        """Plain mode has no dashboard; print the first line now."""
        self._last_line = 0.0
        self.live_update(state)

    def live_update(self, state: DemoState) -> None:
        """A progress line every few seconds."""
        if time.monotonic() - self._last_line >= self.every_s:
            self._last_line = time.monotonic()
            self._print(plain_line(state))

    def live_stop(self) -> None:
        """Nothing to tear down."""

    def table(self, renderable: RenderableType, plain: list[str]) -> None:
        """Print the plain lines of a table."""
        for line in plain:
            print(line, flush=True)

    def lines(self, lines: list[str]) -> None:
        """Print sentences as they are."""
        for line in lines:
            print(line, flush=True)


def make_view() -> View:
    """The dashboard on a terminal, plain lines when stdout is a pipe or a file."""
    with contextlib.suppress(AttributeError, ValueError):
        if sys.stdout.isatty():
            return RichView()
    return PlainView()

