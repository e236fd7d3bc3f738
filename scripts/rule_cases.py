"""The `promtool test rules` cases of monitoring/prometheus/streamer-rules.yml, as data.

A healthy fleet (two workers w1 w2, the standby j, 100 one-minute samples), and cases that
change some of its series. Every case evaluates EVERY alert at its times: the alerts it names
must fire (with the rule's labels and rendered annotations), all others must stay silent. So
each alert has its firing case, and the healthy fleet and a normal rebalance are silent cases
of all of them. scripts/monitoring.py writes the promtool file from this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

N = 99  # `a+bx99` is 100 samples: minutes 0..99


def steady(value: float) -> str:
    return f"{value}+0x{N}"


def ramp(start: float, step: float) -> str:
    return f"{start}+{step}x{N}"


def flat_after(minute: int, step: float, then: float | None = None) -> str:
    """Rises by step per minute until `minute`, then stays (or jumps to `then`)."""
    last = step * minute
    return f"0+{step}x{minute} {then if then is not None else last}+0x{N - minute - 1}"


HEALTHY: dict[str, str] = {
    'streamer_publish_last_success_timestamp_seconds{instance="w1",mode="stream"}': ramp(0, 60),
    'streamer_publish_interval_seconds{instance="w1"}': steady(60),
    'streamer_publish_interval_seconds{instance="w2"}': steady(60),
    'streamer_publish_interval_seconds{instance="j"}': steady(60),
    'streamer_standby_publishing{instance="j"}': steady(0),
    'streamer_merge_missing_partitions{instance="w1"}': steady(0),
    'streamer_merge_missing_partitions{instance="w2"}': steady(0),
    'streamer_consumer_lag{instance="w1",partition="0"}': steady(100),
    'streamer_consumer_lag{instance="w2",partition="1"}': steady(100),
    'streamer_reconcile_drift{instance="w1"}': steady(0),
    'streamer_reconcile_drift{instance="w2"}': steady(0),
    'streamer_events_processed_total{instance="w1"}': ramp(0, 6000),
    'streamer_events_invalid_total{instance="w1",reason="invalid_json"}': ramp(0, 6),
    'streamer_sink_failures_total{instance="w1"}': steady(0),
    'streamer_sink_pending_events{instance="w1"}': steady(0),
    'streamer_sink_lag{instance="w1",partition="0"}': steady(0),
    'streamer_job_last_success_timestamp_seconds{instance="w1",exported_job="suggestions"}': ramp(0, 60),
    'streamer_job_runs_total{instance="w1",exported_job="suggestions",status="failure"}': steady(0),
    'streamer_ready{instance="w1"}': steady(1),
    'streamer_ready{instance="w2"}': steady(1),
    'streamer_ready{instance="j"}': steady(1),
    'streamer_config_reloads_total{instance="w1",result="rejected"}': steady(0),
    'streamer_config_restart_pending{instance="w1"}': steady(0),
    'streamer_lock_holder_changes_total{instance="j",exported_job="trending-standby",event="lost"}':
        steady(0),
}

# w2 leaves at minute 30, w3 joins at 31: one merge misses a partition for two ticks, no publish
# for two minutes, w3 restores for three minutes with a lag it drains, the standby lease moves.
REBALANCE: dict[str, str | None] = {
    'streamer_publish_last_success_timestamp_seconds{instance="w1",mode="stream"}':
        "0+60x29 1740 1740 1920+60x67",
    'streamer_merge_missing_partitions{instance="w1"}': "0+0x29 1 1 0+0x67",
    'streamer_publish_interval_seconds{instance="w2"}': "60+0x29 stale",
    'streamer_merge_missing_partitions{instance="w2"}': "0+0x29 stale",
    'streamer_consumer_lag{instance="w2",partition="1"}': "100+0x29 stale",
    'streamer_reconcile_drift{instance="w2"}': "0+0x29 stale",
    'streamer_ready{instance="w2"}': "1+0x29 stale",
    'streamer_publish_interval_seconds{instance="w3"}': "_x31 60+0x68",
    'streamer_consumer_lag{instance="w3",partition="1"}': "_x31 20000 15000 10000 5000 100+0x64",
    'streamer_ready{instance="w3"}': "_x31 0 0 0 1+0x65",
    'streamer_lock_holder_changes_total{instance="j",exported_job="trending-standby",event="lost"}':
        "0+0x29 1+0x70",
}

# (name, series changes (None removes one), eval minutes, {alert: [extra labels of each alert]})
CASES: list[tuple[str, dict[str, str | None], list[int], dict[str, list[dict[str, str]]]]] = [
    ("healthy fleet", {}, [5, 40, 80, 99], {}),
    ("normal rebalance", REBALANCE, [30, 31, 32, 33, 35, 45, 80], {}),
    ("merger stopped publishing", {
        'streamer_publish_last_success_timestamp_seconds{instance="w1",mode="stream"}':
            flat_after(20, 60),
    }, [80], {"StreamerTrendingNotPublished": [{}]}),
    ("nobody has ever published", {
        'streamer_publish_last_success_timestamp_seconds{instance="w1",mode="stream"}': None,
    }, [10], {"StreamerTrendingNotPublished": [{}]}),
    ("a partition missing from every merge", {
        'streamer_merge_missing_partitions{instance="w1"}': "0+0x20 1+0x78",
    }, [80], {"StreamerMergeIncomplete": [{}]}),
    ("consumer lag growing", {
        'streamer_consumer_lag{instance="w1",partition="0"}': ramp(100, 1000),
    }, [80], {"StreamerConsumerLagGrowing": [{}]}),
    ("drift forces ClickHouse mode", {
        'streamer_reconcile_drift{instance="w1"}': "0+0x20 1+0x78",
    }, [80], {"StreamerDriftClickHouseMode": [{}]}),
    ("standby publishing", {
        'streamer_standby_publishing{instance="j"}': "0+0x20 1+0x78",
    }, [80], {"StreamerStandbyPublishing": [{}]}),
    ("dead letters at 3 %", {
        'streamer_events_invalid_total{instance="w1",reason="invalid_json"}': ramp(0, 200),
    }, [80], {"StreamerDeadLettersHigh": [{}]}),
    ("sink inserts failing", {
        'streamer_sink_failures_total{instance="w1"}': ramp(0, 1),
        'streamer_sink_pending_events{instance="w1"}': steady(500),
    }, [80], {"StreamerSinkFailing": [{}]}),
    ("sink falling behind", {
        'streamer_sink_lag{instance="w1",partition="0"}': ramp(0, 2000),
    }, [80], {"StreamerSinkFallingBehind": [{}]}),
    ("suggestions stopped succeeding", {
        'streamer_job_last_success_timestamp_seconds{instance="w1",exported_job="suggestions"}':
            flat_after(20, 60),
    }, [80], {"StreamerSuggestionsStale": [{}]}),
    ("suggestions never ran", {
        'streamer_job_last_success_timestamp_seconds{instance="w1",exported_job="suggestions"}': None,
    }, [20], {"StreamerSuggestionsStale": [{"exported_job": "suggestions"}]}),
    ("suggestions runs failing", {
        'streamer_job_runs_total{instance="w1",exported_job="suggestions",status="failure"}': ramp(0, 1),
    }, [80], {"StreamerSuggestionsFailing": [{}]}),
    ("a worker never gets ready", {
        'streamer_ready{instance="w2"}': "1+0x20 0+0x78",
    }, [80], {"StreamerNotReady": [{"instance": "w2"}]}),
    ("config reload rejected", {
        'streamer_config_reloads_total{instance="w1",result="rejected"}': "0+0x70 1+0x28",
    }, [75], {"StreamerConfigRejected": [{}]}),
    ("restart pending for over an hour", {
        'streamer_config_restart_pending{instance="w1"}': "0+0x10 1+0x88",
    }, [80], {"StreamerConfigRestartPending": [{}]}),
    ("lock flapping", {
        'streamer_lock_holder_changes_total{instance="j",exported_job="trending-standby",event="lost"}':
            ramp(0, 1),
    }, [80], {"StreamerLockFlapping": [{}]}),
]


def _alerts(rules_path: Path) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(rules_path.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def _expected(rule: dict[str, Any], extra: dict[str, str]) -> dict[str, Any]:
    """One firing alert: the rule's labels plus the series', annotations rendered."""
    annotations = {k: v.replace("{{ $labels.instance }}", extra.get("instance", ""))
                   for k, v in rule["annotations"].items()}
    return {"exp_labels": {**rule["labels"], **extra}, "exp_annotations": annotations}


def rule_tests(rules_path: Path) -> dict[str, Any]:
    """The promtool test file: every case, every alert at every eval time."""
    alerts = _alerts(rules_path)
    tests = []
    for name, changes, minutes, firing in CASES:
        unknown = set(firing) - set(alerts)
        assert not unknown, f"{name}: no such alert {unknown}"
        series = {**HEALTHY, **changes}
        checks = [
            {"eval_time": f"{m}m", "alertname": alert,
             "exp_alerts": [_expected(alerts[alert], extra) for extra in firing.get(alert, [])]}
            for m in minutes for alert in alerts
        ]
        tests.append({
            "name": name, "interval": "1m",
            "input_series": [{"series": s, "values": v} for s, v in series.items() if v],
            "alert_rule_test": checks,
        })
    return {"rule_files": [rules_path.name], "evaluation_interval": "1m", "tests": tests}
