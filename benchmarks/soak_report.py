"""Figures, plot and Markdown of a soak run (benchmarks/soak.py)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from benchmarks.common import median

MB = 1024 * 1024


def _rss_at(samples: list[dict[str, Any]], t_s: float) -> float | None:
    """RSS of the sample nearest to t_s."""
    with_rss = [s for s in samples if s["rss_bytes"]]
    if not with_rss:
        return None
    return float(min(with_rss, key=lambda s: abs(s["t_s"] - t_s))["rss_bytes"])


def cpu_per_event_us(samples: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(t, µs of CPU per counted event) between consecutive samples while the producer ran
    (restarts and the checks' pauses, where idle CPU meets few events, are skipped)."""
    out = []
    for a, b in itertools.pairwise(samples):
        if not (a["producing"] and b["producing"]):
            continue
        events = b["processed"] - a["processed"]
        if events > 0 and b["cpu_s"] >= a["cpu_s"]:
            out.append((b["t_s"], (b["cpu_s"] - a["cpu_s"]) / events * 1e6))
    return out


def recovery_s(doc: dict[str, Any]) -> float | None:
    """From the SIGKILL to the first sample, after the restart was ready, with both lags at 0."""
    marks: dict[str, float] = {what: float(t) for t, what in doc["marks"]}
    killed = next((t for w, t in marks.items() if "SIGKILL" in w), None)
    ready = next((t for w, t in marks.items() if "ready again" in w), None)
    if killed is None or ready is None:
        return None
    for s in doc["samples"]:
        if s["t_s"] >= ready and s["lag"] == 0 and s["sink_lag"] == 0:
            return round(float(s["t_s"]) - killed, 1)
    return None


def figures(doc: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers: RSS halves and end vs 70/130 of the run, lags, CPU, exactness."""
    samples = doc["samples"]
    total_s = doc["minutes"] * 60
    half = total_s / 2
    first = [s["rss_bytes"] for s in samples if s["rss_bytes"] and s["t_s"] < half]
    second = [s["rss_bytes"] for s in samples if s["rss_bytes"] and s["t_s"] >= half]
    at_70 = _rss_at(samples, total_s * 70 / 130)
    end = _rss_at(samples, samples[-1]["t_s"]) if samples else None
    cpu = cpu_per_event_us(samples)
    lags = [s["lag"] for s in samples if s["lag"] is not None]
    sink = [s["sink_lag"] for s in samples if s["sink_lag"] is not None]
    ages = [s["publish_age_s"] for s in samples if s["publish_age_s"] is not None]
    return {
        "rss_first_half_mb": round(median(first) / MB, 1),
        "rss_second_half_mb": round(median(second) / MB, 1),
        "rss_second_over_first": round(median(second) / median(first), 3) if first else None,
        "rss_at_70_of_130_mb": round(at_70 / MB, 1) if at_70 else None,
        "rss_end_mb": round(end / MB, 1) if end else None,
        "rss_end_over_70": round(end / at_70, 3) if end and at_70 else None,
        "max_lag": max(lags, default=None),
        "max_sink_lag": max(sink, default=None),
        "max_publish_age_s": round(max(ages), 1) if ages else None,
        "cpu_us_per_event_median": round(median([c for _, c in cpu]), 1),
        "recovery_after_kill_s": recovery_s(doc),
        "checked": len(doc["checks"]),
        "inexact": sum(1 for c in doc["checks"] if c["verdict"] != "exact"),
    }


def plot(doc: dict[str, Any], path: Path) -> None:
    """Four panels over time (minutes): RSS, CPU per event, lags, publish age; events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["samples"]
    fig, axes = plt.subplots(4, 1, figsize=(10, 11), sharex=True)
    rss = [(x["t_s"] / 60, x["rss_bytes"] / MB) for x in s if x["rss_bytes"]]
    axes[0].plot(*zip(*rss, strict=True)) if rss else None
    axes[0].set_ylabel("RSS worker a (MiB)")
    cpu = cpu_per_event_us(s)
    axes[1].plot([t / 60 for t, _ in cpu], [c for _, c in cpu], lw=0.8)
    axes[1].set_ylabel("CPU per event (µs)")
    axes[2].plot([x["t_s"] / 60 for x in s], [x["lag"] for x in s], label="stream lag")
    axes[2].plot([x["t_s"] / 60 for x in s], [x["sink_lag"] for x in s], label="sink lag")
    axes[2].set_ylabel("messages")
    axes[2].legend(loc="upper right")
    axes[3].plot([x["t_s"] / 60 for x in s], [x["publish_age_s"] for x in s])
    axes[3].set_ylabel("publish age (s)")
    axes[3].set_xlabel("minutes")
    for t, what in doc["marks"]:
        for ax in axes:
            ax.axvline(t / 60, color="grey", ls="--", lw=0.8)
        axes[0].annotate(what, (t / 60, 0.02), xycoords=("data", "axes fraction"), rotation=90,
                         fontsize=7, va="bottom")
    fig.suptitle(f"soak: {doc['minutes']:g} min at {doc['rate']} events/s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(doc: dict[str, Any], image: str) -> str:
    """The section for RELIABILITY.md."""
    f = doc["figures"]
    rows = [
        ("RSS median, first half / second half", f"{f['rss_first_half_mb']} / "
         f"{f['rss_second_half_mb']} MiB (x{f['rss_second_over_first']})"),
        ("RSS at the end / at 70/130 of the run", f"{f['rss_end_mb']} / {f['rss_at_70_of_130_mb']} "
         f"MiB (x{f['rss_end_over_70']})"),
        ("largest stream lag / sink lag", f"{f['max_lag']} / {f['max_sink_lag']} messages"),
        ("lags back to 0 after the SIGKILL", f"{f['recovery_after_kill_s']} s"),
        ("largest publish age", f"{f['max_publish_age_s']} s"),
        ("CPU per event (median of 10 s samples)", f"{f['cpu_us_per_event_median']} µs"),
        ("publishes checked / inexact", f"{f['checked']} / {f['inexact']}"),
    ]
    mix = ", ".join(f"{k} {v:,}" for k, v in doc["mix"].items())
    lines = [f"Command: `{doc['command'].strip()}`", "",
             f"Produced: {mix}.", "", "| figure | value |", "|---|---|"]
    lines += [f"| {a} | {b} |" for a, b in rows]
    lines += ["", "Timeline: " + "; ".join(f"{t / 60:.1f} min {w}" for t, w in doc["marks"]),
              "", f"![soak]({image})", ""]
    return "\n".join(lines)
