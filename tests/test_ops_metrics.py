"""What each process serves on /metrics: only its role's metrics, every label value from 0,
process_* and the build info (alerts rely on all of them)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer import __version__
from streamer.ops import metrics

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _restore_view() -> Iterator[None]:
    """serve_as() sets the process-wide role; give the next test the unfiltered view back."""
    yield
    metrics._VIEW.names = None


def served(role: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples the role serves, by name and sorted labels."""
    metrics.serve_as(role, 60)
    text = metrics.render().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def names(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    return {name for name, _ in samples}


class TestRoles:
    def test_worker_counters_start_at_zero_for_every_label(self) -> None:
        samples = served("worker")
        for mode in ("stream", "clickhouse"):
            assert (("streamer_publish_total", (("mode", mode),))) in samples
        for reason in metrics.INVALID_REASONS:
            assert ("streamer_events_invalid_total", (("reason", reason),)) in samples
        for job in ("suggestions", "reconcile"):
            for status in ("success", "failure", "skipped"):
                key = ("streamer_job_runs_total", (("job", job), ("status", status)))
                assert key in samples, key
        assert {"streamer_reconcile_drift", "streamer_table_recovery_progress"} <= names(samples)

    def test_standby_serves_no_worker_gauges(self) -> None:
        got = names(served("jobs"))
        for worker_only in ("streamer_reconcile_topk_overlap", "streamer_table_recovery_progress",
                            "streamer_partitions_owned", "streamer_events_processed_total",
                            "streamer_merge_missing_partitions", "streamer_sink_pending_events"):
            assert worker_only not in got, worker_only
        assert "streamer_standby_publishing" in got
        assert ("streamer_job_runs_total", (("job", "trending"), ("status", "failure"))) in \
            served("jobs")

    def test_sink_serves_the_sink_and_common_metrics_only(self) -> None:
        got = names(served("sink"))
        assert "streamer_sink_failures_total" in got
        assert not {n for n in got if n.startswith("streamer_publish")}
        assert "streamer_consumer_lag" not in got

    @pytest.mark.parametrize("role", sorted(metrics.ROLE_METRICS))
    def test_process_metrics_and_build_info(self, role: str) -> None:
        samples = served(role)
        assert samples[("streamer_build_info", (("version", __version__),))] == 1
        assert samples[("process_resident_memory_bytes", ())] > 0
        assert ("process_cpu_seconds_total", ()) in samples
        assert ("streamer_config_reloads_total", (("result", "rejected"),)) in samples

    def test_every_role_metric_is_defined(self) -> None:
        """A typo in a role's list would silently drop a metric from /metrics."""
        defined = {fam.name for fam in metrics.REGISTRY.collect()}
        for role, wanted in metrics.ROLE_METRICS.items():
            assert wanted <= defined, (role, wanted - defined)
        every = set().union(*metrics.ROLE_METRICS.values())
        assert defined <= every, f"served by no role: {defined - every}"


def test_invalid_reasons_cover_the_decoder() -> None:
    """Every dead-letter reason the decoder can give starts at 0 on the worker."""
    source = (ROOT / "streamer" / "core" / "events.py").read_text()
    found = set(re.findall(r'InvalidEvent\(\s*"([a-z_]+)"', source))
    found |= set(re.findall(r'DeadLetter\([^,]+,\s*"([a-z_]+)"', source))
    assert found and found <= set(metrics.INVALID_REASONS), found - set(metrics.INVALID_REASONS)
