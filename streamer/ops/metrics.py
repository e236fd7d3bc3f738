"""Every Prometheus metric of the process, defined once (names follow the contract)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from streamer import __version__

# Every streamer metric is defined here; render() serves the share of the process's role.
REGISTRY = CollectorRegistry(auto_describe=True)

EVENTS_PROCESSED = Counter(
    "streamer_events_processed", "Valid events counted (after dedup)", registry=REGISTRY
)
EVENTS_INVALID = Counter(
    "streamer_events_invalid", "Events sent to the dead-letter topic", ["reason"], registry=REGISTRY
)
EVENTS_LATE = Counter(
    "streamer_events_late", "Valid events older than the window start", registry=REGISTRY
)
EVENTS_DUPLICATE = Counter(
    "streamer_events_duplicate", "Events whose event_id was already counted", registry=REGISTRY
)
EVENTS_FORWARDED = Counter(
    "streamer_events_forwarded", "Events re-keyed to their post's partition", registry=REGISTRY
)
PUBLISH_TOTAL = Counter(
    "streamer_publish", "Trending publishes", ["mode"], registry=REGISTRY
)
PUBLISH_DURATION = Histogram(
    "streamer_publish_duration_seconds", "Time to merge and write trending", registry=REGISTRY
)
PUBLISH_AGE = Gauge(
    "streamer_publish_age_seconds", "Seconds since the last successful publish", registry=REGISTRY
)
PUBLISH_INCOMPLETE = Counter(
    "streamer_publish_incomplete",
    "Merges skipped or marked because partitions were missing",
    registry=REGISTRY,
)
JOB_RUNS = Counter(
    "streamer_job_runs", "Job runs by outcome", ["job", "status"], registry=REGISTRY
)
JOB_DURATION = Histogram(
    "streamer_job_duration_seconds", "Job run duration", ["job"], registry=REGISTRY
)
LOCK_CHANGES = Counter(
    "streamer_lock_holder_changes", "Times this replica gained or lost a job lock",
    ["job", "event"], registry=REGISTRY,
)
RECONCILE_OVERLAP = Gauge(
    "streamer_reconcile_topk_overlap", "Overlap of stream and ClickHouse top-K (0..1)",
    registry=REGISTRY,
)
RECONCILE_MAX_DELTA = Gauge(
    "streamer_reconcile_max_score_delta", "Largest score difference stream vs ClickHouse",
    registry=REGISTRY,
)
RECONCILE_DRIFT = Gauge(
    "streamer_reconcile_drift", "1 while drift forces ClickHouse results", registry=REGISTRY
)
STANDBY_PUBLISHING = Gauge(
    "streamer_standby_publishing", "1 while this `streamer jobs` standby publishes trending",
    registry=REGISTRY,
)
MODE = Gauge(
    "streamer_mode", "1 for the trending source in use", ["mode"], registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "streamer_consumer_lag", "Messages behind the end of each partition", ["partition"],
    registry=REGISTRY,
)
RECOVERY_PROGRESS = Gauge(
    "streamer_table_recovery_progress", "Share of table state recovered (0..1)", registry=REGISTRY
)
ACTIVE_POSTS = Gauge(
    "streamer_active_posts", "Posts with state in this worker", registry=REGISTRY
)
SINK_BATCH = Histogram(
    "streamer_sink_batch_size", "Events per ClickHouse insert",
    buckets=(1, 10, 100, 1000, 5000, 10000, 50000), registry=REGISTRY,
)
SINK_FAILURES = Counter(
    "streamer_sink_failures", "Failed ClickHouse inserts (retried)", registry=REGISTRY
)
SINK_TAPPED = Counter(
    "streamer_sink_tapped_events", "Events the sink took decoded from the stream (not fetched)",
    registry=REGISTRY,
)
SINK_PENDING = Gauge(
    "streamer_sink_pending_events", "Accepted events not yet in ClickHouse", registry=REGISTRY
)

PARTITIONS_OWNED = Gauge(
    "streamer_partitions_owned", "Source partitions whose state this worker holds", registry=REGISTRY
)
MERGE_MISSING_PARTITIONS = Gauge(
    "streamer_merge_missing_partitions", "Partitions missing from the last merge", registry=REGISTRY
)
CHANGELOG_RECORDS = Counter(
    "streamer_changelog_records", "State records written to the table changelog", registry=REGISTRY
)

CONFIG_RELOADS = Counter(
    "streamer_config_reloads", "Configuration reloads by result (applied, rejected, unchanged)",
    ["result"], registry=REGISTRY,
)
CONFIG_GENERATION = Gauge(
    "streamer_config_generation", "Applied configuration generation (1 at start, +1 per reload)",
    registry=REGISTRY,
)
CONFIG_RESTART_PENDING = Gauge(
    "streamer_config_restart_pending",
    "Restart-only settings whose configured value differs from the running one",
    registry=REGISTRY,
)
SUGGESTION_SHARDS = Counter(
    "streamer_suggestion_shards",
    "Shards of suggestions runs finished by this replica (a run counts once in job_runs)",
    registry=REGISTRY,
)
SUGGESTION_USERS = Counter(
    "streamer_suggestion_users",
    "Active users per suggestions run by outcome: recomputed, renewed (TTL only, value "
    "unchanged), stale (refreshed only after the run's interval had passed)",
    ["outcome"],
    registry=REGISTRY,
)

BUILD_INFO = Gauge(
    "streamer_build_info", "Always 1; the version label names the running streamer", ["version"],
    registry=REGISTRY,
)
BUILD_INFO.labels(version=__version__).set(1)
READY = Gauge(
    "streamer_ready", "1 while the process is ready (what /readyz answers)", registry=REGISTRY
)
JOB_LAST_SUCCESS = Gauge(
    "streamer_job_last_success_timestamp_seconds",
    "Unix time of this process's last successful job run", ["job"], registry=REGISTRY,
)
PUBLISH_LAST_SUCCESS = Gauge(
    "streamer_publish_last_success_timestamp_seconds",
    "Unix time of this process's last trending publish", ["mode"], registry=REGISTRY,
)
PUBLISH_INTERVAL = Gauge(
    "streamer_publish_interval_seconds", "Configured trending interval (JOB_TRENDING_INTERVAL_SEC)",
    registry=REGISTRY,
)
SINK_LAG = Gauge(
    "streamer_sink_lag", "Messages the ClickHouse sink has not yet written, per partition",
    ["partition"], registry=REGISTRY,
)
SINK_LAST_SUCCESS = Gauge(
    "streamer_sink_last_success_timestamp_seconds",
    "Unix time of the sink's last successful ClickHouse insert", registry=REGISTRY,
)

# Label values each process can emit, exported at 0 from the start: a rate or an increase over
# a series that appears with its first failure would miss that failure.
INVALID_REASONS = ("invalid_json", "not_an_object", "missing_field", "invalid_type",
                   "out_of_range", "unknown_event_type", "future_ts")
RUN_STATUSES = ("success", "failure", "skipped")
_COMMON = frozenset({"streamer_build_info", "streamer_ready", "streamer_config_reloads",
                     "streamer_config_generation", "streamer_config_restart_pending"})
_PUBLISHER = frozenset({
    "streamer_publish", "streamer_publish_duration_seconds", "streamer_publish_age_seconds",
    "streamer_publish_last_success_timestamp_seconds", "streamer_publish_interval_seconds",
    "streamer_mode", "streamer_job_runs", "streamer_job_duration_seconds",
    "streamer_job_last_success_timestamp_seconds", "streamer_lock_holder_changes",
    "streamer_suggestion_users", "streamer_suggestion_shards",
})
_SINK = frozenset({"streamer_sink_batch_size", "streamer_sink_failures",
                   "streamer_sink_pending_events", "streamer_sink_lag",
                   "streamer_sink_last_success_timestamp_seconds"})
ROLE_METRICS: dict[str, frozenset[str]] = {
    "worker": _COMMON | _PUBLISHER | _SINK | {
        "streamer_events_processed", "streamer_events_invalid", "streamer_events_late",
        "streamer_events_duplicate", "streamer_events_forwarded", "streamer_publish_incomplete",
        "streamer_reconcile_topk_overlap", "streamer_reconcile_max_score_delta",
        "streamer_reconcile_drift", "streamer_consumer_lag", "streamer_table_recovery_progress",
        "streamer_active_posts", "streamer_partitions_owned", "streamer_merge_missing_partitions",
        "streamer_changelog_records", "streamer_sink_tapped_events",
    },
    "jobs": _COMMON | _PUBLISHER | {"streamer_standby_publishing"},
    "sink": _COMMON | _SINK,
}
_LEASE_EVENTS = ("acquired", "lost", "released")
ROLE_LOCK_EVENTS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    "worker": (("suggestions", ("acquired",)),),
    "jobs": (("trending", ("acquired",)), ("suggestions", ("acquired",)),
             ("trending-standby", _LEASE_EVENTS)),
    "sink": (),
}
ROLE_JOBS: dict[str, tuple[str, ...]] = {
    "worker": ("suggestions", "reconcile"), "jobs": ("trending", "suggestions"), "sink": (),
}


class _RoleView(Collector):
    """The families of REGISTRY one role serves (all of them until a role is set)."""

    def __init__(self) -> None:
        self.names: frozenset[str] | None = None

    def collect(self) -> Iterator[Metric]:
        """Yield the role's families only."""
        for family in REGISTRY.collect():
            if self.names is None or family.name in self.names:
                yield family


_VIEW = _RoleView()
EXPOSED = CollectorRegistry(auto_describe=False)
EXPOSED.register(_VIEW)
EXPOSED.register(PROCESS_COLLECTOR)  # process_* (RSS, CPU, open fds): a custom registry lacks them
EXPOSED.register(PLATFORM_COLLECTOR)  # python_info


def _zero(counter: Counter, label: str, values: Iterable[str]) -> None:
    for value in values:
        counter.labels(**{label: value})


def serve_as(role: str, interval_s: int | None = None) -> None:
    """Export only what this role does, every label value it can emit starting at 0."""
    _VIEW.names = ROLE_METRICS[role]
    _zero(CONFIG_RELOADS, "result", ("applied", "rejected", "unchanged"))
    if role == "sink":
        return
    if interval_s is not None:
        PUBLISH_INTERVAL.set(interval_s)
    _zero(PUBLISH_TOTAL, "mode", ("clickhouse",) if role == "jobs" else ("stream", "clickhouse"))
    _zero(SUGGESTION_USERS, "outcome", ("recomputed", "renewed", "stale"))
    for job, events in ROLE_LOCK_EVENTS[role]:
        for event in events:
            LOCK_CHANGES.labels(job=job, event=event)
    for job in ROLE_JOBS[role]:
        for status in RUN_STATUSES:
            JOB_RUNS.labels(job=job, status=status)
        JOB_DURATION.labels(job=job)
    if role == "worker":
        _zero(EVENTS_INVALID, "reason", INVALID_REASONS)


def render() -> bytes:
    """Prometheus text exposition of this process's metrics (its role's, plus process_*)."""
    return generate_latest(EXPOSED)
