"""JOB_TRENDING_COUNT and JOB_TRENDING_MIN_PEOPLE: defaults, validation by name, restart-only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamer.errors import ConfigError
from streamer.settings.file import diff_settings
from streamer.settings.model import Settings, load_settings


def test_defaults_count_events_with_no_minimum() -> None:
    s = load_settings({})
    assert (s.job_trending_count, s.job_trending_min_people) == ("events", 1)
    s = load_settings({"JOB_TRENDING_COUNT": "people", "JOB_TRENDING_MIN_PEOPLE": "5"})
    assert (s.job_trending_count, s.job_trending_min_people) == ("people", 5)


@pytest.mark.parametrize(("name", "raw"), [
    ("JOB_TRENDING_COUNT", "persons"), ("JOB_TRENDING_COUNT", "People"),
    ("JOB_TRENDING_COUNT", ""), ("JOB_TRENDING_MIN_PEOPLE", "0"),
    ("JOB_TRENDING_MIN_PEOPLE", "-2"), ("JOB_TRENDING_MIN_PEOPLE", "1.5"),
    ("JOB_TRENDING_MIN_PEOPLE", "five"),
])
def test_invalid_values_are_rejected_by_name(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: raw})
    assert info.value.variable == name


def test_bad_value_exits_2_with_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "streamer", "check-config"],
                         env={"JOB_TRENDING_COUNT": "bots", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "JOB_TRENDING_COUNT" in out.stderr


def test_both_need_a_restart() -> None:
    running = load_settings({})
    new = load_settings({"JOB_TRENDING_COUNT": "people", "JOB_TRENDING_MIN_PEOPLE": "3"})
    diff = diff_settings(running, new, Settings.model_fields)
    assert set(diff.restart_only) == {"job_trending_count", "job_trending_min_people"}
    assert not diff.reloadable
