"""The shipped alert rules, their promtool unit tests, the dashboard and the Operator objects."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    """A module of scripts/ (not a package), imported by path."""
    sys.path.insert(0, str(ROOT / "scripts"))  # monitoring.py imports its sibling rule_cases
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


monitoring = _script("monitoring")
rule_cases = _script("rule_cases")

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing (Debian package `prometheus`, scripts/setup.sh)"
)
OPS = ROOT / "docs" / "OPERATIONS.md"
K8S = ROOT / "k8s"


def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of the plain rules file."""
    groups = yaml.safe_load(monitoring.RULES.read_text())["groups"]
    return [r for g in groups for r in g["rules"] if "alert" in r]


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors of a Markdown text."""
    out = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_generated_files_are_current() -> None:
    """The PrometheusRule, dashboard files and promtool cases match their sources."""
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "monitoring.py"), "--check"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheusrule_is_the_rules_file() -> None:
    rule = yaml.safe_load((K8S / "prometheusrule.yaml").read_text())
    plain = yaml.safe_load(monitoring.RULES.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == plain["groups"]


class TestAlerts:
    """What the issue asks of every alert."""

    REQUIRED = frozenset({"StreamerTrendingNotPublished", "StreamerMergeIncomplete",
                "StreamerConsumerLagGrowing", "StreamerDriftClickHouseMode",
                "StreamerDeadLettersHigh", "StreamerSinkFailing", "StreamerSinkFallingBehind",
                "StreamerSuggestionsStale", "StreamerSuggestionsFailing", "StreamerNotReady",
                "StreamerConfigRestartPending"})

    def test_the_required_alerts_exist(self) -> None:
        assert {a["alert"] for a in alerts()} >= self.REQUIRED

    @pytest.mark.parametrize("rule", alerts(), ids=lambda r: r["alert"])
    def test_runbook_severity_summary(self, rule: dict[str, Any]) -> None:
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/OPERATIONS.md" and anchor == rule["alert"].lower(), url
        assert anchor in anchors(OPS.read_text()), f"no section {rule['alert']} in OPERATIONS.md"
        assert rule["labels"]["severity"] in ("critical", "warning", "info")
        assert "first" in rule["annotations"]["summary"].lower()  # names what to do first

    def test_every_alert_fires_and_stays_silent_in_some_case(self) -> None:
        names = {a["alert"] for a in alerts()}
        fired = {name for _, _, _, firing in rule_cases.CASES for name in firing}
        silent_everywhere = {c[0] for c in rule_cases.CASES if not c[3]}
        assert names <= fired, names - fired
        assert {"healthy fleet", "normal rebalance"} <= silent_everywhere

    def test_trending_alert_is_fleet_wide_and_fires_on_absence(self) -> None:
        expr = next(a for a in alerts() if a["alert"] == "StreamerTrendingNotPublished")["expr"]
        assert "absent(" in expr and "max(" in expr


@needs_promtool
def test_promtool_check_rules() -> None:
    proc = subprocess.run([str(PROMTOOL), "check", "rules", str(monitoring.RULES)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    """Every case of scripts/rule_cases.py: the named alerts fire, every other one is silent."""
    proc = subprocess.run([str(PROMTOOL), "test", "rules", monitoring.RULE_TESTS.name],
                          cwd=monitoring.RULE_TESTS.parent, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@needs_promtool
def test_promtool_catches_a_broken_rule(tmp_path: Path) -> None:
    """The unit tests can fail: a rule that never fires is reported."""
    for src in monitoring.RULES.parent.iterdir():
        shutil.copy(src, tmp_path / src.name)
    rules = tmp_path / monitoring.RULES.name
    rules.write_text(rules.read_text().replace(
        "expr: max(streamer_reconcile_drift) == 1", "expr: max(streamer_reconcile_drift) == 2"))
    proc = subprocess.run([str(PROMTOOL), "test", "rules", monitoring.RULE_TESTS.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "StreamerDriftClickHouseMode" in proc.stdout + proc.stderr


class TestOperatorObjects:
    """ServiceMonitor and dashboard ConfigMap (no bundled schema for the Operator's kinds)."""

    def test_servicemonitor_selects_the_metrics_service(self) -> None:
        sm = yaml.safe_load((K8S / "servicemonitor.yaml").read_text())
        svc = yaml.safe_load((K8S / "service-metrics.yaml").read_text())
        assert sm["apiVersion"] == "monitoring.coreos.com/v1" and sm["kind"] == "ServiceMonitor"
        assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        ports = {p["name"] for p in svc["spec"]["ports"]}
        assert [e["port"] for e in sm["spec"]["endpoints"]] == ["http-metrics"]
        assert "http-metrics" in ports
        assert set(sm["spec"]["endpoints"][0]) <= {"port", "path", "interval", "scrapeTimeout",
                                                   "relabelings"}

    def test_dashboard_configmap(self) -> None:
        cm = yaml.safe_load((K8S / "grafana-dashboard.yaml").read_text())
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        board = json.loads(cm["data"]["streamer.json"])
        assert board == json.loads(monitoring.DASHBOARD.read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        assert exprs == monitoring.dashboard_exprs() and len(board["panels"]) >= 12
        for metric in ("streamer_consumer_lag", "streamer_publish_duration_seconds_bucket",
                       "streamer_events_invalid_total", "process_resident_memory_bytes",
                       "process_cpu_seconds_total", "streamer_config_generation",
                       "streamer_sink_lag", "streamer_reconcile_drift"):
            assert any(metric in e for e in exprs), metric

    def test_init_job_reapplies_cleanly(self) -> None:
        job = yaml.safe_load((K8S / "init-job.yaml").read_text())
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["streamer", "init"]
        assert 0 < job["spec"]["ttlSecondsAfterFinished"] <= 3600
