"""Trending window bounds: the current minute and the (60 x hours - 1) before it."""

from __future__ import annotations

from dataclasses import dataclass

MINUTE_MS = 60_000


def minute_of(ts_ms: int) -> int:
    """Minute index (epoch minutes) that holds ts_ms."""
    return ts_ms // MINUTE_MS


@dataclass(frozen=True, slots=True)
class Window:
    """Half-open event-time window [start_ms, end_ms)."""

    start_ms: int
    end_ms: int

    @property
    def first_minute(self) -> int:
        """Oldest minute index inside the window."""
        return self.start_ms // MINUTE_MS

    @property
    def last_minute(self) -> int:
        """Newest minute index inside the window."""
        return self.end_ms // MINUTE_MS - 1

    def contains(self, ts_ms: int) -> bool:
        """True when ts_ms falls inside the window."""
        return self.start_ms <= ts_ms < self.end_ms


def window_at(now_ms: int, window_minutes: int) -> Window:
    """The contract's window for a publish at now_ms."""
    floor_ms = now_ms - now_ms % MINUTE_MS
    return Window(floor_ms - (window_minutes - 1) * MINUTE_MS, floor_ms + MINUTE_MS)


def complete_window_at(now_ms: int, window_minutes: int) -> Window:
    """The window ending at the last complete minute (used to reconcile settled data)."""
    floor_ms = now_ms - now_ms % MINUTE_MS
    return Window(floor_ms - window_minutes * MINUTE_MS, floor_ms)
