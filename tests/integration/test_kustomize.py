"""k8s/: the plain-manifest install and the distributed Locust deployment, rendered by
`kubectl kustomize` exactly as docs/deploy.md says, then validated offline."""

from __future__ import annotations

import ast
import copy
import re
from functools import cache
from pathlib import Path

import helm_python as helm
import pytest

from tests.integration import k8s_manifests as km

ROOT = Path(__file__).resolve().parents[2]
BASE_CMD = "kubectl kustomize k8s/base"
LOADTEST_CMD = "kubectl kustomize --load-restrictor LoadRestrictionsNone k8s/loadtest"
SCENARIO_MOUNT = "/opt/humtemp/loadtest"
POD_NAMESPACE_ENV = {
    "name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}
}
HELM_ONLY_LABELS = {
    "helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/version",
    "app.kubernetes.io/instance",
}


@cache
def rendered(command: str) -> tuple[dict, ...]:
    """Objects of one documented kustomize command (rendered once)."""
    return tuple(km.parse_docs([km.kustomize(command, ROOT)]))


@pytest.mark.parametrize("command", [BASE_CMD, LOADTEST_CMD])
def test_commands_are_the_documented_ones(command: str) -> None:
    assert command in (ROOT / "docs" / "deploy.md").read_text()


def test_base_validates() -> None:
    objs = list(rendered(BASE_CMD))
    km.check_all(objs)
    assert sorted(d["kind"] for d in objs) == sorted(
        ["ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
         "PodDisruptionBudget", "Service", "Service", "ServiceAccount", "StatefulSet"]
    )
    assert all("namespace" not in d["metadata"] for d in objs), "kubectl -n / overlays decide"


def normalise(doc: dict, renames: dict[str, str]) -> dict:
    """Drop what legitimately differs between the chart and the plain manifests."""

    def walk(node: object) -> object:
        if isinstance(node, dict):
            return {
                k: walk(v) for k, v in node.items()
                if k not in HELM_ONLY_LABELS and not k.startswith("checksum/")
                and not (k == "namespace" and v == "prod")
            }
        if isinstance(node, list):
            return [walk(v) for v in node if v != POD_NAMESPACE_ENV]
        if isinstance(node, str):
            node = node.replace(".prod.svc.", ".$(POD_NAMESPACE).svc.")
            return renames.get(node, node)
        return node

    def prune(node: object) -> object:
        if isinstance(node, dict):
            return {k: prune(v) for k, v in node.items() if not (k == "annotations" and not v)}
        return [prune(v) for v in node] if isinstance(node, list) else node

    return prune(walk(copy.deepcopy(doc)))


def test_base_is_the_chart_at_default_settings() -> None:
    """The same objects as `helm template humtemp helm/humtemp`, minus Helm bookkeeping."""
    with helm.Chart.load(str(ROOT / "helm" / "humtemp")) as chart:
        out = chart.render(values={"tests": {"enabled": False}}, name="humtemp", namespace="prod")
    chart_objs = km.parse_docs(t for p, t in out.items() if not p.endswith("NOTES.txt"))
    plain = list(rendered(BASE_CMD))
    generated = {d["metadata"]["name"]: "humtemp-redis" for d in plain if d["kind"] == "ConfigMap"}
    want = [normalise(d, {}) for d in chart_objs]
    got = [normalise(d, generated) for d in plain]
    want = {(d["kind"], d["metadata"]["name"]): d for d in want}
    got = {(d["kind"], d["metadata"]["name"]): d for d in got}
    assert sorted(got) == sorted(want)
    for key, doc in want.items():
        assert got[key] == doc, f"k8s/base differs from the chart for {key}"


def test_base_shard_urls_use_pod_names_in_any_namespace() -> None:
    objs = list(rendered(BASE_CMD))
    sts = km.one(objs, "StatefulSet")
    (c,) = km.one(objs, "Deployment")["spec"]["template"]["spec"]["containers"]
    names = [e["name"] for e in c["env"]]
    assert names.index("POD_NAMESPACE") < names.index("HUMTEMP_REDIS_URLS")
    urls = c["env"][names.index("HUMTEMP_REDIS_URLS")]["value"].split(",")
    assert len(urls) == sts["spec"]["replicas"]
    svc = sts["spec"]["serviceName"]
    for i, entry in enumerate(urls):
        pod = f"{sts['metadata']['name']}-{i}"
        assert entry == f"{pod}=redis://{pod}.{svc}.$(POD_NAMESPACE).svc.cluster.local:6379/0"


def loadtest_imports(path: Path, seen: set[str]) -> set[str]:
    """Module files of the loadtest package reachable from `path` by imports."""
    seen.add(path.name)
    for node in ast.walk(ast.parse(path.read_text())):
        mods: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "loadtest":
                mods = [a.name for a in node.names]
            elif node.module.startswith("loadtest."):
                mods = [node.module.split(".")[1]]
        elif isinstance(node, ast.Import):
            mods = [a.name.split(".")[1] for a in node.names if a.name.startswith("loadtest.")]
        for mod in mods:
            file = path.parent / f"{mod}.py"
            if file.exists() and file.name not in seen:
                loadtest_imports(file, seen)
    return seen


def test_loadtest_validates() -> None:
    objs = list(rendered(LOADTEST_CMD))
    km.check_all(objs, probe_exempt=frozenset({"locust-worker"}))
    assert {(d["kind"], d["metadata"]["name"]) for d in objs} >= {
        ("Deployment", "locust-master"), ("Deployment", "locust-worker"),
        ("Service", "locust-master"),
    }


def test_loadtest_scenarios_come_from_the_repository() -> None:
    objs = list(rendered(LOADTEST_CMD))
    (cm,) = [d for d in objs if d["kind"] == "ConfigMap"]
    pkg = ROOT / "loadtest"
    needed = loadtest_imports(pkg / "locustfile.py", {"__init__.py"})
    assert needed <= set(cm["data"]), f"add to the configMapGenerator: {needed - set(cm['data'])}"
    for name, text in cm["data"].items():
        assert text == (pkg / name).read_text(), name
    for dep in km.by_kind(objs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == SCENARIO_MOUNT)
        assert volumes[mount["name"]]["configMap"]["name"] == cm["metadata"]["name"]
        assert c["args"][:2] == ["--locustfile", f"{SCENARIO_MOUNT}/locustfile.py"]


def test_loadtest_workers_reach_the_master_and_the_master_targets_humtemp() -> None:
    objs = list(rendered(LOADTEST_CMD))
    deps = {d["metadata"]["name"]: d for d in km.by_kind(objs, "Deployment")}
    (svc,) = km.by_kind(objs, "Service")
    (worker,) = deps["locust-worker"]["spec"]["template"]["spec"]["containers"]
    args = worker["args"]
    assert "--worker" in args and args[args.index("--master-host") + 1] == svc["metadata"]["name"]
    master_port = next(p for p in svc["spec"]["ports"] if p["name"] == "master")
    assert master_port["port"] == 5557  # Locust's default --master-port
    (master,) = deps["locust-master"]["spec"]["template"]["spec"]["containers"]
    assert "--master" in master["args"]
    env = {e["name"]: e for e in master["env"]}
    target = env["HUMTEMP_TARGET"]["value"]
    base = list(rendered(BASE_CMD))
    app_svc = next(s for s in km.by_kind(base, "Service") if s["spec"].get("clusterIP") != "None")
    assert re.fullmatch(
        rf"http://{app_svc['metadata']['name']}\.\$\(POD_NAMESPACE\)\.svc\.cluster\.local"
        rf"(:{app_svc['spec']['ports'][0]['port']})?",
        target,
    ) and app_svc["spec"]["ports"][0]["port"] == 80
    names = [e["name"] for e in master["env"]]
    assert names.index("POD_NAMESPACE") < names.index("HUMTEMP_TARGET")
