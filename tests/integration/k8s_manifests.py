"""Offline checks of rendered Kubernetes manifests (Helm chart and kustomize output).

No control plane runs here, so correctness is proven by the official 1.30 schemas
(kubernetes-validate, strict: misspelled fields fail) plus the cross-object semantics the
schemas cannot see: selectors that select, ports that exist, targets that exist.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import kubernetes_validate
import yaml

KUBE_VERSION = "1.30"
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def parse_docs(texts: Iterable[str]) -> list[dict]:
    """YAML streams -> objects; blank documents (disabled templates) are skipped."""
    docs: list[dict] = []
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if doc:
                assert isinstance(doc, dict), f"not a Kubernetes object: {doc!r}"
                docs.append(doc)
    return docs


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    """Objects of one kind."""
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict], kind: str) -> dict:
    """The single object of a kind (fails when there are none or several)."""
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def validate_builtin(doc: dict) -> None:
    """Strict 1.30 schema validation; a missing schema for a built-in kind is a failure."""
    try:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        first = str(exc).splitlines()[0]
        path = "/".join(str(p) for p in exc.path)
        where = f"{doc['kind']}/{doc['metadata']['name']} at {path}"
        raise AssertionError(f"{where}: {first}") from None


def validate_service_monitor(doc: dict, services: list[dict]) -> None:
    """ServiceMonitor (CRD, no official schema): structure, and it must select a real port."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    spec = doc["spec"]
    assert set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, spec.keys()
    selector = spec["selector"]["matchLabels"]
    matched = [s for s in services if labels_match(selector, s["metadata"].get("labels", {}))]
    assert matched, f"ServiceMonitor selects no Service: {selector}"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, endpoint
        for svc in matched:
            names = {p.get("name") for p in svc["spec"]["ports"]}
            assert endpoint["port"] in names, f"port {endpoint['port']} not in {names}"
        assert endpoint["path"].startswith("/")
        for key in ("interval", "scrapeTimeout"):
            assert DURATION.match(endpoint[key]), endpoint[key]


def validate_prometheus_rule(doc: dict) -> None:
    """PrometheusRule (CRD): structure here, rule semantics by the real promtool."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    groups = doc["spec"]["groups"]
    assert isinstance(groups, list)
    for group in groups:
        assert isinstance(group["name"], str) and group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str | int) and str(rule["expr"]).strip()
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is required"
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as fh:
        yaml.safe_dump({"groups": groups}, fh)
        fh.flush()
        res = subprocess.run([promtool, "check", "rules", fh.name], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def validate_all(docs: list[dict]) -> None:
    """Every object: official schema, or the CRD checks above."""
    services = by_kind(docs, "Service")
    for doc in docs:
        assert DNS_LABEL.match(doc["metadata"]["name"]), doc["metadata"]["name"]
        if doc["kind"] == "ServiceMonitor":
            validate_service_monitor(doc, services)
        elif doc["kind"] == "PrometheusRule":
            validate_prometheus_rule(doc)
        else:
            validate_builtin(doc)


def labels_match(selector: dict, labels: dict) -> bool:
    """matchLabels semantics: every selector pair is among the labels."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_template(workload: dict) -> dict:
    """The pod template of a workload."""
    return workload["spec"]["template"]


def check_workloads(docs: list[dict], probe_exempt: frozenset[str] = frozenset()) -> None:
    """Selectors match their own pod labels, containers have probes and resources.

    probe_exempt: workloads that open no port to probe (e.g. Locust workers).
    """
    for wl in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        tmpl = pod_template(wl)
        sel = wl["spec"]["selector"]["matchLabels"]
        assert labels_match(sel, tmpl["metadata"]["labels"]), wl["metadata"]["name"]
        for c in tmpl["spec"]["containers"]:
            name = f"{wl['metadata']['name']}/{c['name']}"
            if wl["metadata"]["name"] not in probe_exempt:
                assert "readinessProbe" in c and "livenessProbe" in c, f"{name}: probes missing"
            assert c.get("resources", {}).get("requests"), f"{name}: no resource requests"
            declared = {v["name"] for v in tmpl["spec"].get("volumes", [])}
            claims = {t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])}
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in declared | claims, f"{name}: no volume {mount['name']}"
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                port = c.get(probe, {}).get("httpGet", {}).get("port")
                if isinstance(port, str):
                    assert port in {p["name"] for p in c["ports"]}, f"{name}: {probe} port"
            assert tmpl["spec"]["securityContext"]["runAsNonRoot"] is True, name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name


def check_services(docs: list[dict]) -> None:
    """Every Service selects exactly one workload's pods and targets a named container port."""
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        hits = [w for w in workloads if labels_match(sel, pod_template(w)["metadata"]["labels"])]
        assert len(hits) == 1, f"Service {svc['metadata']['name']} selects {len(hits)} workloads"
        ports = {p["name"] for c in pod_template(hits[0])["spec"]["containers"] for p in c["ports"]}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{svc['metadata']['name']}: {port['targetPort']}"


def check_targets(docs: list[dict]) -> None:
    """HPAs scale an existing Deployment; PDBs select pods of exactly one workload."""
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) in names and ref["apiVersion"] == "apps/v1", ref
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        sel = pdb["spec"]["selector"]["matchLabels"]
        hits = [w for w in workloads if labels_match(sel, pod_template(w)["metadata"]["labels"])]
        assert len(hits) == 1, f"PDB {pdb['metadata']['name']} selects {len(hits)} workloads"


def check_network_policies(docs: list[dict]) -> None:
    """Each policy protects one workload, admits pods of another, on ports the target has."""
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]

    def selected(sel: dict) -> list[dict]:
        return [w for w in workloads if labels_match(sel, pod_template(w)["metadata"]["labels"])]

    for pol in by_kind(docs, "NetworkPolicy"):
        (target,) = selected(pol["spec"]["podSelector"]["matchLabels"])
        ports = {p["name"] for c in pod_template(target)["spec"]["containers"] for p in c["ports"]}
        for rule in pol["spec"]["ingress"]:
            peers = [p["podSelector"]["matchLabels"] for p in rule["from"] if "podSelector" in p]
            assert all(len(selected(sel)) == 1 for sel in peers), pol["metadata"]["name"]
            for port in rule["ports"]:
                assert port["port"] in ports, f"{pol['metadata']['name']}: {port['port']}"


def check_all(docs: list[dict], probe_exempt: frozenset[str] = frozenset()) -> None:
    """Schema validation plus every cross-object check."""
    validate_all(docs)
    check_workloads(docs, probe_exempt)
    check_services(docs)
    check_targets(docs)
    check_network_policies(docs)


def kustomize(command: str, cwd: Path) -> str:
    """Run a documented `kubectl kustomize ...` command line verbatim (offline)."""
    res = subprocess.run(shlex.split(command), cwd=cwd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout
