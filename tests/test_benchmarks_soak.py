"""The soak's figures from its samples (the soak itself runs for hours and is not in CI)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.soak import Mix, parse_args
from benchmarks.soak_report import figures, markdown, plot
from benchmarks.stream_exact import recompute

MB = 1024 * 1024


def doc() -> dict[str, Any]:
    """A 13-minute run: RSS flat at 100 MiB then 104, lag 0 but 500 around the kill at 400 s."""
    samples = []
    for i in range(79):
        t = i * 10.0
        rss = (100 if t < 390 else 104) * MB
        lag = 500.0 if 400 <= t < 430 else 0.0
        samples.append({"t_s": t, "rss_bytes": None if t == 410 else rss, "cpu_s": i * 0.5,
                        "processed": i * 1000.0, "lag": None if t == 410 else lag,
                        "sink_lag": 0.0, "publish_age_s": t % 60, "producing": True})
    return {"minutes": 13, "rate": 100, "posts": 10, "mix": {"valid": 1}, "samples": samples,
            "checks": [{"t_s": 600, "why": "x", "verdict": "exact"},
                       {"t_s": 700, "why": "x", "verdict": "published 50 posts, first difference"}],
            "marks": [(400.0, "worker a killed (SIGKILL), restarted"), (415.0, "worker a ready again")],
            "command": "python -m benchmarks soak --minutes 13"}


def test_figures() -> None:
    f = figures(doc())
    assert f["rss_first_half_mb"] == 100 and f["rss_second_half_mb"] == 104
    assert f["rss_end_over_70"] == 1.0  # 70/130 of 780 s is 420 s: already 104
    assert f["max_lag"] == 500 and f["recovery_after_kill_s"] == 30
    assert (f["checked"], f["inexact"]) == (2, 1)
    assert f["cpu_us_per_event_median"] == 500


def test_markdown_and_plot(tmp_path: Path) -> None:
    d = doc()
    d["figures"] = figures(d)
    plot(d, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 10_000
    text = markdown(d, "soak.png")
    assert "| publishes checked / inexact | 2 / 1 |" in text and "![soak](soak.png)" in text


def test_mix_keeps_every_valid_event_for_the_recount() -> None:
    """Duplicates repeat a kept event, late ones fall outside the window, bad ones are not kept."""
    mix = Mix(posts=50)
    now = 10 * 3_600_000
    messages = mix.batch(5000, now)
    assert len(messages) == 5000
    assert mix.counts["bad"] > 0 and mix.counts["duplicate"] > 0 and mix.counts["late"] > 0
    assert len(mix.valid) == mix.counts["valid"] + mix.counts["late"]
    in_window = recompute(mix.valid, now - 3_600_000, now + 1)
    assert sum(p.views + p.likes + p.comments + p.shares for p in in_window) <= mix.counts["valid"]
    assert parse_args([]).minutes == 130
