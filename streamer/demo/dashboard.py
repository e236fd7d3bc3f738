"""What the live view shows, computed from snapshots: rates, publish and reconcile lines, the
trending table and the whole dashboard (rich), or one plain line for logs and pipes."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from streamer.demo.options import RECONCILE_INTERVAL_S, SUGGESTION_INTERVAL_S, TRENDING_INTERVAL_S
from streamer.demo.poll import Metrics, Snapshot


@dataclass
class DemoState:
    """Everything the live view needs, updated by the runner."""

    phase: str = "starting"
    started_s: float = field(default_factory=time.monotonic)
    traffic_elapsed_s: float = 0.0
    traffic_duration_s: float = 0.0
    target_rate: float = 0.0
    produced: int = 0
    dead_letters_sent: int = 0
    trending_interval_s: int = TRENDING_INTERVAL_S
    suggestion_interval_s: int = SUGGESTION_INTERVAL_S
    reconcile_interval_s: int = RECONCILE_INTERVAL_S
    last: Snapshot | None = None
    previous_ranks: dict[int, int] = field(default_factory=dict)
    _history: deque[tuple[float, int, float]] = field(default_factory=lambda: deque(maxlen=40))

    def observe(self, snap: Snapshot) -> None:
        """Take a new snapshot: remember rates and the ranks of the previous publish."""
        last = self.last
        if last is not None and last.meta and snap.meta and (
            snap.meta.get("generated_at_ms") != last.meta.get("generated_at_ms")
        ):
            self.previous_ranks = {p.post_id: i for i, p in enumerate(last.trending or [])}
        self.last = snap
        processed = snap.metrics.total("streamer_events_processed_total") if snap.metrics else 0.0
        self._history.append((snap.at_s, self.produced, processed))

    def rates(self) -> tuple[float, float]:
        """Events/s produced and counted by the worker, over the last few seconds."""
        recent = [h for h in self._history if h[0] >= self._history[-1][0] - 3.0] if self._history else []
        if len(recent) < 2 or recent[-1][0] <= recent[0][0]:
            return 0.0, 0.0
        dt = recent[-1][0] - recent[0][0]
        return (recent[-1][1] - recent[0][1]) / dt, (recent[-1][2] - recent[0][2]) / dt


def fmt_time_ms(ms: int | float) -> str:
    """Wall-clock time of an epoch-ms value, HH:MM:SS UTC."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def publish_line(state: DemoState) -> str:
    """`12:00:03 UTC (2 s ago), mode stream, 4/4 partitions`, or why there is none yet."""
    meta = state.last.meta if state.last else None
    if not meta:
        return f"none yet (first one within {state.trending_interval_s} s of the worker start)"
    age_s = max(0.0, time.time() - meta["generated_at_ms"] / 1000)
    when = f"{fmt_time_ms(meta['generated_at_ms'])} UTC ({age_s:.0f} s ago)"
    if meta.get("mode") != "stream":
        return f"{when}, mode {meta.get('mode')} (batch query)"
    parts = meta.get("partitions", [])
    missing = meta.get("missing_partitions", [])
    return f"{when}, mode stream, {len(parts)}/{len(parts) + len(missing)} partitions"


def reconcile_line(state: DemoState) -> str:
    """The latest stream-vs-ClickHouse comparison (from Redis), or when to expect it."""
    snap = state.last
    rec = snap.reconcile if snap else None
    if rec:
        overlap = rec.get("topk_overlap", rec.get("overlap"))
        text = f"overlap {float(overlap):.0%}" if overlap is not None else "ran"
        if rec.get("max_score_delta") is not None:
            text += f", max score delta {float(rec['max_score_delta']):g}"
        events = rec.get("events") or {}
        if "stream" in events and "clickhouse" in events:
            text += f", events {int(events['stream']):,} vs {int(events['clickhouse']):,}"
        if rec.get("window_end_ms"):
            text += f" (to {fmt_time_ms(rec['window_end_ms'])} UTC)"
        if rec.get("drifted"):
            text += f"; drift, {rec.get('consecutive_drift_runs', 1)} run(s) in a row"
        return text
    metrics = snap.metrics if snap else None
    if metrics is not None and metrics.present("streamer_reconcile_topk_overlap") and (
        metrics.total("streamer_reconcile_topk_overlap") > 0
    ):
        overlap = metrics.total("streamer_reconcile_topk_overlap")
        delta = metrics.total("streamer_reconcile_max_score_delta")
        return f"overlap {overlap:.0%}, max score delta {delta:g}"
    return f"not run yet (every {state.reconcile_interval_s} s, over complete minutes)"


def pipeline_rows(state: DemoState) -> list[tuple[str, str]]:
    """(label, value) rows of the pipeline panel, in plain words."""
    m = state.last.metrics if state.last and state.last.metrics else Metrics()
    produced_rate, counted_rate = state.rates()
    invalid = m.by_label("streamer_events_invalid_total", "reason")
    reasons = ", ".join(f"{r} {int(n)}" for r, n in sorted(invalid.items()) if n) or "none yet"
    publishes = m.by_label("streamer_publish_total", "mode")
    jobs = m.by_label("streamer_job_runs_total", "job")
    lag = m.total("streamer_consumer_lag")
    return [
        ("produced", f"{state.produced:,} events ({produced_rate:,.0f}/s)"),
        ("counted by worker", f"{int(m.total('streamer_events_processed_total')):,} events "
                              f"({counted_rate:,.0f}/s)"),
        ("dead letters (DLQ)", f"{int(m.total('streamer_events_invalid_total')):,} "
                               f"of {state.dead_letters_sent:,} sent broken"),
        ("  by reason", reasons),
        ("duplicates ignored", f"{int(m.total('streamer_events_duplicate_total')):,}"),
        ("late (before window)", f"{int(m.total('streamer_events_late_total')):,}"),
        ("re-keyed to own partition", f"{int(m.total('streamer_events_forwarded_total')):,}"),
        ("consumer lag", f"{int(lag):,} messages" if m.present("streamer_consumer_lag") else "n/a"),
        ("last publish", publish_line(state)),
        ("publishes", ", ".join(f"{k} {int(v)}" for k, v in sorted(publishes.items())) or "0"),
        ("reconcile vs CH", reconcile_line(state)),
        ("job runs", ", ".join(f"{k} {int(v)}" for k, v in sorted(jobs.items())) or "none yet"),
    ]


def _movement(state: DemoState, post_id: int, rank: int) -> Text:
    if not state.previous_ranks:
        return Text("")
    before = state.previous_ranks.get(post_id)
    if before is None:
        return Text("new", style="bold green")
    if before > rank:
        return Text(f"▲{before - rank}", style="green")
    if before < rank:
        return Text(f"▼{rank - before}", style="red")
    return Text("=", style="dim")


def trending_table(state: DemoState) -> Table:
    """The current top 10 as published in Redis, with movement since the previous publish."""
    posts = state.last.trending if state.last and state.last.trending is not None else None
    count = "nothing published yet" if posts is None else f"top 10 of {len(posts)} published"
    table = Table(title=f"Trending now in Redis ({count})", expand=True, padding=(0, 1),
                  box=box.SIMPLE_HEAD)
    for col in ("#", "post", "score", "views", "likes", "comm.", "shares", "move"):
        table.add_column(col, justify="right", no_wrap=True)
    for i, p in enumerate((posts or [])[:10]):
        table.add_row(str(i + 1), str(p.post_id), f"{p.score:,.1f}", f"{p.views:,}",
                      f"{p.likes:,}", f"{p.comments:,}", f"{p.shares:,}", _movement(state, p.post_id, i))
    return table


def render(state: DemoState, width: int = 120) -> RenderableType:
    """The whole live view: side by side from 110 columns, stacked on narrower terminals."""
    elapsed = time.monotonic() - state.started_s
    head = Text.assemble(("streamer demo", "bold"), f"  ·  {state.phase}  ·  running {elapsed:.0f} s")
    done = state.traffic_elapsed_s
    bar = Table.grid(expand=True)
    bar.add_column(width=30)
    bar.add_column()
    bar.add_row(f"traffic {done:.0f}/{state.traffic_duration_s:.0f} s at {state.target_rate:,.0f} ev/s",
                ProgressBar(total=max(state.traffic_duration_s, 1), completed=done))
    side = Table.grid(padding=(0, 1))
    side.add_column(style="cyan", no_wrap=True)
    side.add_column()
    for label, value in pipeline_rows(state):
        side.add_row(label, value)
    panel = Panel(side, title="Pipeline (producer, worker /metrics, Redis)")
    body: RenderableType
    if width >= 110:
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(width=64)
        grid.add_column()
        grid.add_row(trending_table(state), panel)
        body = grid
    else:
        body = Group(trending_table(state), panel)
    foot = Text(
        f"Trending is published every {state.trending_interval_s} s and suggestions every "
        f"{state.suggestion_interval_s} s (demo settings; production defaults are 60 s and 600 s). "
        "Score = views x 0.1 + likes x 2 + comments x 3 + shares x 5 over the last hour. "
        "Ctrl-C stops everything.", style="dim")
    return Group(head, bar, body, foot)


def plain_line(state: DemoState) -> str:
    """One progress line for logs and pipes."""
    rows = dict(pipeline_rows(state))
    top = state.last.trending if state.last and state.last.trending else []
    lead = f"#1 post {top[0].post_id} score {top[0].score:,.1f}" if top else "no trending list yet"
    return (f"[{time.monotonic() - state.started_s:5.0f}s] {state.phase}: produced "
            f"{rows['produced']}, counted {rows['counted by worker']}, dead letters "
            f"{rows['dead letters (DLQ)']}, last publish {rows['last publish']}; reconcile "
            f"{rows['reconcile vs CH']}; {lead}")

