"""Every Prometheus metric of the process, defined once (names follow the contract)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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


def render() -> bytes:
    """Prometheus text exposition of every metric."""
    return generate_latest(REGISTRY)
