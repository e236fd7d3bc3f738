"""Trending window bounds: exact minutes, the current minute and the ones before it."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.window import MINUTE_MS, Window, complete_window_at, minute_of, window_at

NOW_2026 = 1_795_913_777_000
times = st.integers(min_value=0, max_value=4_000_000_000_000)
lengths = st.integers(min_value=1, max_value=48 * 60)


def oracle_window(now_ms: int, minutes: int) -> tuple[int, int]:
    """Contract text: m = now floored to the minute; [m - (minutes - 1) min, m + 1 min)."""
    m = (now_ms // 60_000) * 60_000
    return m - (minutes - 1) * 60_000, m + 60_000


def test_contract_example_one_hour() -> None:
    """At 12:34:56.789 the one-hour window is [11:35, 12:35)."""
    now = 1_795_913_696_789  # some instant; check against hand arithmetic
    floor = now - now % 60_000
    w = window_at(now, 60)
    assert (w.start_ms, w.end_ms) == (floor - 59 * 60_000, floor + 60_000)
    assert w.end_ms - w.start_ms == 3_600_000
    assert w.last_minute - w.first_minute == 59


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(times, lengths)
def test_window_at_matches_oracle(now: int, minutes: int) -> None:
    """window_at == the contract's formula; `now` is inside; length is exactly `minutes`."""
    w = window_at(now, minutes)
    assert (w.start_ms, w.end_ms) == oracle_window(now, minutes)
    assert w.contains(now)
    assert w.end_ms - w.start_ms == minutes * MINUTE_MS
    assert w.start_ms % MINUTE_MS == 0
    assert w.last_minute == minute_of(now)
    assert w.last_minute - w.first_minute + 1 == minutes


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.integers(min_value=1, max_value=60_000_000), lengths)
def test_window_changes_exactly_at_minute_boundaries(minute: int, minutes: int) -> None:
    """m:59.999 and m+1:00.000 differ by one minute; everything within a minute is equal."""
    start = minute * MINUTE_MS
    assert window_at(start, minutes) == window_at(start + MINUTE_MS - 1, minutes)
    before = window_at(start - 1, minutes)
    at = window_at(start, minutes)
    assert at.start_ms - before.start_ms == MINUTE_MS
    assert at.end_ms - before.end_ms == MINUTE_MS
    assert before.contains(start - 1) and not before.contains(start)
    assert at.contains(start) and not at.contains(at.start_ms - 1)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(times, lengths)
def test_complete_window_ends_at_the_last_complete_minute(now: int, minutes: int) -> None:
    """complete_window_at is window_at shifted back one minute: the current minute excluded."""
    w = complete_window_at(now, minutes)
    live = window_at(now, minutes)
    assert w == Window(live.start_ms - MINUTE_MS, live.end_ms - MINUTE_MS)
    assert not w.contains(now)
    assert w.end_ms == now - now % MINUTE_MS
    assert w.end_ms - w.start_ms == minutes * MINUTE_MS


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.integers(min_value=0, max_value=4_000_000_000_000))
def test_contains_is_half_open(ts: int) -> None:
    """[start, end): start in, end out."""
    w = window_at(ts, 60)
    assert w.contains(w.start_ms)
    assert w.contains(w.end_ms - 1)
    assert not w.contains(w.end_ms)
    assert not w.contains(w.start_ms - 1)
    assert minute_of(w.start_ms) == w.first_minute


def test_realistic_now() -> None:
    """A 2026 timestamp with hours=2 gives 120 minutes ending after now's minute."""
    w = window_at(NOW_2026, 120)
    assert w.first_minute == minute_of(NOW_2026) - 119
    assert w.end_ms == (minute_of(NOW_2026) + 1) * MINUTE_MS
