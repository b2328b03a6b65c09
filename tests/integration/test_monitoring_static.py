"""Dashboard and alert rules, checked without a server: promtool and grafana-foundation-sdk.

The live counterpart (a real Prometheus scraping a real humtemp) is test_monitoring_live.py.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring import check

DOCS = check.REPO / "docs" / "monitoring.md"
ALERT_NAMES = {
    "HumtempShardDown",
    "HumtempHigh5xxRatio",
    "HumtempP99LatencyHigh",
    "HumtempIngestionStopped",
    "HumtempPendingQueueGrowing",
    "HumtempShardReset",
    "HumtempShardMemoryHigh",
    "HumtempBucketLabsHigh",
}
# Every metric family of CONTRACT.md must be on the dashboard.
CONTRACT_METRICS = {
    "humtemp_http_requests_total",
    "humtemp_http_request_duration_seconds",
    "humtemp_observations_accepted_total",
    "humtemp_observations_rejected_total",
    "humtemp_batch_size",
    "humtemp_shard_up",
    "humtemp_shard_flush_duration_seconds",
    "humtemp_shard_flush_keys",
    "humtemp_shard_flush_observations",
    "humtemp_shard_pending_observations",
    "humtemp_shard_errors_total",
    "humtemp_shard_reroutes_total",
    "humtemp_shard_resets_total",
    "humtemp_shard_memory_used_ratio",
    "humtemp_read_fanout_duration_seconds",
    "humtemp_bucket_reads_total",
    "humtemp_event_loop_lag_seconds",
    "humtemp_bucket_labs",
    "humtemp_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
}
SCOPE = ('namespace=~"$namespace"', 'job=~"$job"', 'instance=~"$instance"')
_SELECTOR = re.compile(r"\b((?:humtemp|process)_[a-z_]+)\b(\{[^}]*\})?")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return check.load_dashboard()


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(check.ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _anchors(markdown: str) -> set[str]:
    """GitHub-style heading anchors of a markdown document."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return out


# --- alert rules -----------------------------------------------------------------------


def test_promtool_check_rules_is_clean() -> None:
    proc = check.check_rules()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(ALERT_NAMES)} rules found" in proc.stdout


def test_promtool_alert_unit_tests_pass() -> None:
    proc = check.test_rules()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_catch_a_broken_rule(tmp_path: Path) -> None:
    """Negative control: the same unit tests against a rule with a wrong threshold fail."""
    files = tmp_path / "helm" / "humtemp" / "files"
    files.mkdir(parents=True)
    broken = check.ALERTS.read_text().replace("> 0.05", "> 0.5")
    assert broken != check.ALERTS.read_text()
    (files / "alerts.yaml").write_text(broken)
    (tmp_path / "monitoring").mkdir()
    tests = tmp_path / "monitoring" / "alerts_test.yaml"
    tests.write_text(check.ALERT_TESTS.read_text())
    proc = check.promtool("test", "rules", str(tests))
    assert proc.returncode != 0
    assert "HumtempHigh5xxRatio" in proc.stdout + proc.stderr


def test_each_alert_is_unit_tested_firing_and_silent() -> None:
    doc = yaml.safe_load(check.ALERT_TESTS.read_text())
    cases = [c for t in doc["tests"] for c in t["alert_rule_test"]]
    firing = {c["alertname"] for c in cases if c["exp_alerts"]}
    silent = {c["alertname"] for c in cases if not c["exp_alerts"]}
    assert firing == ALERT_NAMES
    assert silent == ALERT_NAMES


def test_alerts_have_for_severity_annotations_and_runbook(rules: list[dict[str, Any]]) -> None:
    anchors = _anchors(DOCS.read_text())
    assert {r["alert"] for r in rules} == ALERT_NAMES
    for rule in rules:
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), name
        assert notes["runbook_url"].endswith(f"docs/monitoring.md#{name.lower()}"), name
        assert name.lower() in anchors, f"docs/monitoring.md has no section for {name}"


# --- dashboard -------------------------------------------------------------------------


def test_dashboard_survives_sdk_round_trip(dashboard: dict[str, Any]) -> None:
    assert check.lost_in_round_trip(dashboard, check.sdk_round_trip(dashboard)) == []


def test_sdk_round_trip_catches_a_typo(dashboard: dict[str, Any]) -> None:
    """Negative control: a misspelled key is dropped by the model, and we notice."""
    typo = copy.deepcopy(dashboard)
    panel = next(p for p in typo["panels"] if p["type"] == "timeseries")
    panel["gridPoss"] = panel.pop("gridPos")
    panel["targets"][0]["legendFromat"] = panel["targets"][0].pop("legendFormat")
    lost = check.lost_in_round_trip(typo, check.sdk_round_trip(typo))
    assert any(x.endswith(".gridPoss: vanished") for x in lost), lost
    assert any(x.endswith(".legendFromat: vanished") for x in lost), lost


def test_dashboard_promql_syntax(dashboard: dict[str, Any]) -> None:
    queries = check.panel_queries(dashboard)
    exprs = [check.substitute(q.expr) for q in queries]
    exprs += [check.substitute(v.selector) for v in check.variable_queries(dashboard)]
    proc = check.check_promql_syntax(exprs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promql_syntax_check_rejects_bad_query() -> None:
    proc = check.check_promql_syntax(["sum(rate(humtemp_http_requests_total[1m])"])
    assert proc.returncode != 0


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert 36 <= dashboard["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    queries = check.variable_queries(dashboard)
    assert [(v.name, v.label) for v in queries] == [
        ("namespace", "namespace"),
        ("job", "job"),
        ("instance", "instance"),
    ]
    assert all(v.selector.startswith("humtemp_build_info") for v in queries)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]


def test_every_query_is_scoped_by_the_variables(dashboard: dict[str, Any]) -> None:
    """Each metric selector filters on namespace, job and instance, so the variables work."""
    for query in check.panel_queries(dashboard):
        for name, labels in _SELECTOR.findall(query.expr):
            assert labels, f"{query.panel}: {name} without selector"
            for matcher in SCOPE:
                assert matcher in labels, f"{query.panel}: {name}{labels} lacks {matcher}"


def test_dashboard_covers_every_contract_metric(dashboard: dict[str, Any]) -> None:
    used = set().union(*(check.metric_names(q.expr) for q in check.panel_queries(dashboard)))
    assert used == CONTRACT_METRICS, used ^ CONTRACT_METRICS


def test_substitute_replaces_variables_and_intervals() -> None:
    expr = 'rate(x{job=~"$job", instance=~"${instance}"}[$__rate_interval])'
    assert check.substitute(expr, "30s") == 'rate(x{job=~".*", instance=~".*"}[30s])'
