"""docs/OPERATIONS.md stays in step with the metrics and settings it documents."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics_core import Metric

from streamer.config import Settings
from streamer.ops.metrics import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
OPS = ROOT / "docs" / "OPERATIONS.md"
# Variables of the ClickHouse server container in docker-compose.yml, not of streamer.
FOREIGN_ENV = {"CLICKHOUSE_USER", "CLICKHOUSE_PASSWORD"}
OUR_PREFIXES = ("STREAMER_", "JOB_", "KAFKA_", "CLICKHOUSE_", "REDIS_", "RECONCILE_", "LOG_")


def exposed_name(family: Metric) -> str:
    """The name Prometheus scrapes (counters get `_total`)."""
    return f"{family.name}_total" if family.type == "counter" else family.name


class TestOperationsDoc:
    """The operations guide names real metrics and real variables."""

    def test_every_metric_is_documented(self) -> None:
        """Each metric in streamer/ops/metrics.py has a row in the metrics table."""
        text = OPS.read_text()
        missing = [exposed_name(f) for f in REGISTRY.collect() if f"`{exposed_name(f)}`" not in text]
        assert not missing, f"document these in docs/OPERATIONS.md: {missing}"

    def test_documented_metrics_exist(self) -> None:
        """Every metric name in the table is one the process serves."""
        text = OPS.read_text()
        rows = set(re.findall(r"^\| `(streamer_[a-z_]+)` \|", text, re.M))
        served = {exposed_name(f) for f in REGISTRY.collect()}
        assert rows and rows <= served, rows - served

    def test_documented_variables_are_settings(self) -> None:
        """Every streamer variable the guide mentions is a Settings field."""
        known = {name.upper() for name in Settings.model_fields}
        mentioned = set(re.findall(r"`([A-Z][A-Z0-9_]+)(?:=[^`]*)?`", OPS.read_text()))
        ours = {m for m in mentioned if m.startswith(OUR_PREFIXES)} - FOREIGN_ENV
        assert ours and ours <= known, ours - known

    def test_every_manifest_is_described(self) -> None:
        """Each file in k8s/ appears in the guide's table."""
        text = OPS.read_text()
        for path in (ROOT / "k8s").glob("*.yaml"):
            assert f"`{path.name}`" in text, path.name
