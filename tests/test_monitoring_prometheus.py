"""A real Prometheus (Debian `prometheus`) scrapes a worker and the standby with the shipped
rules: every rule and dashboard expression evaluates without error and finds its series, and
stopping every publisher makes the trending alert go pending."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.ports import start_listening
from tests.stream_helpers import Cluster, WorkerProcess, keyed, now_ms, produce, random_events

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "monitoring" / "prometheus" / "streamer-rules.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "streamer-dashboard.json"
PROMETHEUS = shutil.which("prometheus")
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="prometheus missing (Debian package `prometheus`, scripts/setup.sh)"
)
# A vector selector: a metric name with optional matchers, not followed by `(` (a function).
T = TypeVar("T")
SELECTOR = re.compile(r"\b((?:streamer|process)_[a-z_]+)(\{[^}]*\})?(?!\w|\s*\()")


class Prometheus:
    """The server on a free port with tmp storage, scraping every second."""

    def __init__(self, root: Path, targets: list[str]) -> None:
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                       "scrape_timeout": "900ms"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": "streamer",
                                "static_configs": [{"targets": targets}]}],
        }
        (root / "prometheus.yml").write_text(yaml.safe_dump(config))
        assert PROMETHEUS is not None
        binary = PROMETHEUS

        def spawn(port: int) -> subprocess.Popen[bytes]:
            with (root / "prometheus.log").open("wb") as log:
                return subprocess.Popen(
                    [binary, f"--config.file={root / 'prometheus.yml'}",
                     f"--storage.tsdb.path={root / 'tsdb'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        self.proc, self.port = start_listening(spawn, root / "prometheus.log")

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/<path>; the `data` of a success (raises with the error otherwise)."""
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise AssertionError(f"{path} {params}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query: the result vector (errors raise with Prometheus's message)."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        return list(data["result"])

    def alert_state(self, name: str) -> str:
        """`inactive`, `pending` or `firing` for one rule of the shipped file."""
        for group in self.api("rules")["groups"]:
            for rule in group["rules"]:
                if rule.get("name") == name:
                    assert rule.get("health") == "ok", rule
                    return str(rule["state"])
        raise AssertionError(f"rule {name} not loaded")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def standby(cluster: Cluster, tmp_path: Path) -> Iterator[WorkerProcess]:
    """`streamer jobs` beside the cluster's workers (own embedded ClickHouse), stopped at the end."""
    env = {**cluster.env, "CLICKHOUSE_URL": ""}
    proc = WorkerProcess(env, tmp_path / "standby", command="jobs").start()
    try:
        yield proc
    finally:
        proc.kill()


def rule_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"]}


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def selectors(expr: str) -> set[str]:
    """The vector selectors of a PromQL expression (name plus matchers)."""
    return {name + (matchers or "") for name, matchers in SELECTOR.findall(expr)}


def poll(value: Callable[[], T], accept: Callable[[T], bool], timeout_s: float, what: str) -> T:
    """The first accepted value; AssertionError with the last one seen on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        seen = value()
        if accept(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}; last seen: {seen}")
        time.sleep(0.2)


def test_rules_and_dashboard_against_a_real_prometheus(
    cluster: Cluster, standby: WorkerProcess, tmp_path: Path,
) -> None:
    worker = cluster.worker("w1")
    worker.wait_ready()
    standby.wait_ready()
    asyncio.run(produce(cluster.bootstrap, cluster.topic,
                        [*keyed(random_events(300, 20, now_ms(), 7)), (b"1", b"not json", None)]))
    prom = Prometheus(tmp_path, [f"127.0.0.1:{worker.port}", f"127.0.0.1:{standby.port}"])
    try:
        _check(prom, worker, standby)
    finally:
        prom.stop()


def _up(prom: Prometheus) -> list[dict[str, Any]]:
    with contextlib.suppress(OSError, AssertionError):
        return prom.query('up{job="streamer"} == 1')
    return []


def _check(prom: Prometheus, worker: WorkerProcess, standby: WorkerProcess) -> None:
    poll(lambda: _up(prom), lambda up: len(up) == 2, 60, "both targets up")
    wanted = set().union(*(selectors(e) for e in [*rule_exprs().values(), *dashboard_exprs()]))
    assert len(wanted) >= 25, wanted
    poll(lambda: sorted(s for s in wanted if not prom.query(f"count({s})")), lambda m: not m, 60,
         "a series for every selector of the rules and the dashboard")
    for name, expr in rule_exprs().items():
        prom.query(expr)  # raises with Prometheus's error when the expression is invalid
        assert prom.alert_state(name) in ("inactive", "pending", "firing"), name
    # rate()s need two samples inside their range: give the scrapes a few seconds.
    poll(lambda: [e for e in dashboard_exprs() if not prom.query(e)], lambda m: not m, 60,
         "series from every dashboard query")
    # Healthy: the worker publishes every 2 s, so the trending alert is quiet...
    trending = "StreamerTrendingNotPublished"
    poll(lambda: prom.alert_state(trending), lambda s: s == "inactive", 60, f"{trending} quiet")
    # ...until nobody publishes: stop the standby first (it would take over), then the worker.
    assert standby.terminate() == 0
    assert worker.terminate() == 0
    poll(lambda: prom.alert_state(trending), lambda s: s in ("pending", "firing"), 60,
         f"{trending} pending once nobody publishes")
