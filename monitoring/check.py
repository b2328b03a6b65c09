"""Offline checks of the monitoring assets (dashboard JSON and alert rules).

Run `python -m monitoring.check` from the repository root. It uses only promtool and the
grafana-foundation-sdk, no server, so it is the quick loop while editing the dashboard or the
rules; tests/integration/test_monitoring*.py reuse these functions and add the live checks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "helm" / "humtemp" / "files" / "dashboard.json"
ALERTS = REPO / "helm" / "humtemp" / "files" / "alerts.yaml"
ALERT_TESTS = REPO / "monitoring" / "alerts_test.yaml"
PROMTOOL = "promtool"

# Grafana's interval macros, replaced by a fixed window when a query runs outside Grafana.
_GRAFANA_INTERVALS = ("__rate_interval", "__interval", "__range")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\b((?:humtemp|process)_[a-z_]+)\b")
_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


class PanelQuery(NamedTuple):
    """One target of one panel: what Grafana would send to Prometheus."""

    panel: str
    ref_id: str
    expr: str


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every non-row panel, including those nested in collapsed rows."""
    out: list[dict[str, Any]] = []
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def panel_queries(dashboard: dict[str, Any]) -> list[PanelQuery]:
    return [
        PanelQuery(p.get("title", f"panel {p.get('id')}"), t.get("refId", "?"), t["expr"])
        for p in _panels(dashboard)
        for t in p.get("targets", [])
        if not t.get("hide")
    ]


class VariableQuery(NamedTuple):
    """A `label_values(selector, label)` template variable."""

    name: str
    selector: str
    label: str


def variable_queries(dashboard: dict[str, Any]) -> list[VariableQuery]:
    out = []
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"] if isinstance(var["query"], str) else var["query"]["query"]
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", query)
        if m is None:
            raise ValueError(f"variable {var['name']}: not label_values(selector, label)")
        out.append(VariableQuery(var["name"], m.group(1), m.group(2)))
    return out


def substitute(expr: str, window: str = "1m", value: str = ".*") -> str:
    """Replace Grafana macros by `window` and template variables by `value` (a regex for =~)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return window if name in _GRAFANA_INTERVALS else value

    return _VARIABLE.sub(repl, expr)


def metric_names(expr: str) -> set[str]:
    """Metric families an expression reads (histogram series folded into their family)."""
    names = set()
    for name in _METRIC.findall(expr):
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix):
                name = name.removesuffix(suffix)
                break
        names.add(name)
    return names


def sdk_round_trip(dashboard: dict[str, Any]) -> dict[str, Any]:
    """Load the JSON into grafana-foundation-sdk's Dashboard model and serialise it back."""
    from grafana_foundation_sdk.cog import plugins
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    plugins.register_default_plugins()  # typed panel options and Prometheus targets
    model = Dashboard.from_json(dashboard)
    return json.loads(json.dumps(model, cls=JSONEncoder))


def lost_in_round_trip(orig: Any, back: Any, path: str = "$") -> list[str]:
    """Keys the model dropped (unknown to the schema: typos) and values it changed."""
    if isinstance(orig, dict):
        if not isinstance(back, dict):
            return [f"{path}: became {type(back).__name__}"]
        out = []
        for key, value in orig.items():
            if key not in back:
                out.append(f"{path}.{key}: vanished")
            else:
                out.extend(lost_in_round_trip(value, back[key], f"{path}.{key}"))
        return out
    if isinstance(orig, list):
        if not isinstance(back, list) or len(orig) != len(back):
            return [f"{path}: list changed"]
        out = []
        for i, (a, b) in enumerate(zip(orig, back, strict=True)):
            out.extend(lost_in_round_trip(a, b, f"{path}[{i}]"))
        return out
    return [] if orig == back else [f"{path}: {orig!r} became {back!r}"]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False
    )


def check_promql_syntax(exprs: list[str]) -> subprocess.CompletedProcess[str]:
    """`promtool check rules` on the expressions wrapped as recording rules (syntax check)."""
    rules = [{"record": f"humtemp:dashboard_query_{i}", "expr": e} for i, e in enumerate(exprs)]
    doc = {"groups": [{"name": "dashboard-queries", "rules": rules}]}
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    try:
        return promtool("check", "rules", f.name)
    finally:
        Path(f.name).unlink()


def check_rules() -> subprocess.CompletedProcess[str]:
    return promtool("check", "rules", str(ALERTS))


def test_rules() -> subprocess.CompletedProcess[str]:
    """promtool resolves rule_files relative to the test file, so any cwd works."""
    return promtool("test", "rules", str(ALERT_TESTS))


test_rules.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def main() -> int:
    """Run every offline check; print what failed; exit 1 if anything did."""
    dashboard = load_dashboard()
    lost = lost_in_round_trip(dashboard, sdk_round_trip(dashboard))
    print(f"dashboard SDK round trip: {'ok' if not lost else 'FAILED'}")
    failures = [f"round trip {x}" for x in lost]
    exprs = [substitute(q.expr) for q in panel_queries(dashboard)]
    exprs += [substitute(v.selector) for v in variable_queries(dashboard)]
    for name, proc in (
        (f"dashboard PromQL ({len(exprs)} queries)", check_promql_syntax(exprs)),
        ("promtool check rules", check_rules()),
        ("promtool test rules", test_rules()),
    ):
        print(f"{name}: {'ok' if proc.returncode == 0 else f'FAILED (rc {proc.returncode})'}")
        if proc.returncode:
            failures.append(f"{name}:\n{proc.stdout}{proc.stderr}")
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
