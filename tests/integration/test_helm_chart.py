"""The Helm chart, rendered by the real Helm engine (helm-python-sdk) and checked offline.

Each values set renders once (module-scoped cache); every rendered object validates against
the Kubernetes 1.30 schemas (strict) and the cross-object semantics in k8s_manifests.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from tests.integration import k8s_manifests as km

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "humtemp"
RELEASE, NAMESPACE = "demo", "prod"
FULLNAME = f"{RELEASE}-humtemp"
STS = f"{FULLNAME}-redis"
HEADLESS = f"{STS}-headless"

EXTERNAL = [
    {"name": "managed-a", "url": "rediss://:$(MANAGED_REDIS_PASSWORD)@redis-a.example.net:6380/0"},
    {"name": "managed-b", "url": "redis://10.0.0.7:6379/2"},
]
CASES: dict[str, dict] = {
    "defaults": {},
    "shards5": {"redis": {"shards": 5}},
    "external": {
        "redis": {"enabled": False},
        "externalShards": EXTERNAL,
        "extraEnv": [
            {
                "name": "MANAGED_REDIS_PASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "managed-redis", "key": "password"}},
            }
        ],
    },
    "ingress": {
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "annotations": {"nginx.ingress.kubernetes.io/proxy-body-size": "1m"},
            "hosts": [
                {"host": "sensors.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}
            ],
            "tls": [{"secretName": "sensors-tls", "hosts": ["sensors.example.com"]}],
        }
    },
    "monitoring": {
        "metrics": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "prometheusRule": {"enabled": True},
            "dashboard": {"enabled": True, "annotations": {"grafana_folder": "humtemp"}},
        }
    },
    "autoscaling": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
    "auth": {"redis": {"auth": {"enabled": True}, "shards": 4}},
    "auth-existing": {"redis": {"auth": {"enabled": True, "existingSecret": "my-redis"}}},
    "workers-no-persistence": {"workers": 2, "redis": {"persistence": {"enabled": False}}},
    "readers": {
        "readers": {"enabled": True, "replicaCount": 3,
                    "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 5}},
        "ingress": {"enabled": True, "hosts": [
            {"host": "sensors.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}]},
        "metrics": {"serviceMonitor": {"enabled": True}},
        "config": {"readCacheSeconds": 0.5, "maxLabsPerBucket": 1000000},
    },
    "capacity-100k": yaml.safe_load((CHART / "values-100k.yaml").read_text()),
}


@cache
def rendered(case: str) -> tuple[dict, ...]:
    """Render one values set once: the parsed objects (NOTES.txt excluded)."""
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values=CASES[case], name=RELEASE, namespace=NAMESPACE, is_install=True)
    texts = [text for path, text in out.items() if not path.endswith("NOTES.txt")]
    return tuple(km.parse_docs(texts))


def docs(case: str) -> list[dict]:
    """Rendered objects of a case, as a list."""
    return list(rendered(case))


def app_container(objs: list[dict]) -> dict:
    """The humtemp container of the (server) Deployment."""
    dep = next(d for d in km.by_kind(objs, "Deployment") if d["metadata"]["name"] == FULLNAME)
    containers = dep["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "humtemp"]
    return container


def env_of(container: dict) -> dict[str, dict]:
    """Container env by name."""
    return {e["name"]: e for e in container.get("env", [])}


def shard_entries(objs: list[dict]) -> list[tuple[str, str]]:
    """HUMTEMP_REDIS_URLS as (name, url) pairs."""
    value = env_of(app_container(objs))["HUMTEMP_REDIS_URLS"]["value"]
    return [tuple(entry.split("=", 1)) for entry in value.split(",")]


# --- every values set: renders, lints, validates --------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_renders_and_validates(case: str) -> None:
    objs = docs(case)
    assert len(objs) >= 5
    km.check_all(objs)


@pytest.mark.parametrize("case", list(CASES))
def test_strict_lint_is_clean(case: str) -> None:
    report = helm.lint(str(CHART), CASES[case], strict=True, kube_version="v1.30.0")
    assert report["messages"] == [] and not report.get("errors"), report


def test_offline_install_dry_run() -> None:
    """`helm install --dry-run=client` through the SDK (install code path, offline)."""
    with helm.Config(
        storage_driver="memory", namespace=NAMESPACE, kube_apiserver="https://127.0.0.1:1"
    ) as cfg:
        rel = cfg.install(str(CHART), RELEASE, {}, dry_run="client")
    assert rel["status"] == "pending-install" and "helm test demo" in rel["notes"]
    objs = km.parse_docs([rel["manifest"]])
    km.check_all(objs)
    # The test Pod is a hook: run by `helm test`, never part of the installed manifest.
    kinds = {d["kind"] for d in objs}
    assert "StatefulSet" in kinds and "Pod" not in kinds


# --- semantics ---------------------------------------------------------------------------------


def test_default_objects() -> None:
    kinds = sorted(d["kind"] for d in docs("defaults"))
    assert kinds == sorted(
        [
            "ConfigMap", "Deployment", "NetworkPolicy", "Pod", "PodDisruptionBudget",
            "PodDisruptionBudget",
            "Service", "Service", "ServiceAccount", "StatefulSet",
        ]
    )


@pytest.mark.parametrize("case,shards", [("defaults", 3), ("shards5", 5), ("auth", 4)])
def test_shard_list_is_the_statefulset_pods(case: str, shards: int) -> None:
    """One entry per StatefulSet replica, named by the pod name, reached by its stable DNS name."""
    objs = docs(case)
    sts = km.one(objs, "StatefulSet")
    assert sts["metadata"]["name"] == STS and sts["spec"]["replicas"] == shards
    headless = [s for s in km.by_kind(objs, "Service") if s["metadata"]["name"] == HEADLESS]
    assert headless and headless[0]["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == HEADLESS
    entries = shard_entries(objs)
    assert len(entries) == sts["spec"]["replicas"]
    auth = "auth" in case
    for i, (name, url) in enumerate(entries):
        pod = f"{STS}-{i}"
        assert name == pod
        creds = ":$(REDIS_PASSWORD)@" if auth else ""
        assert url == f"redis://{creds}{pod}.{HEADLESS}.{NAMESPACE}.svc.cluster.local:6379/0"


def test_redis_shards_persist_with_aof_everysec() -> None:
    objs = docs("defaults")
    sts = km.one(objs, "StatefulSet")
    conf_map = km.one(objs, "ConfigMap")
    conf = dict(
        line.split(None, 1) for line in conf_map["data"]["redis.conf"].splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "everysec"
    assert conf["dir"] == "/data" and conf["maxmemory-policy"] == "noeviction"
    pod = sts["spec"]["template"]["spec"]
    (redis,) = pod["containers"]
    assert redis["args"][0] == "/etc/redis/redis.conf"
    mounts = {m["mountPath"]: m["name"] for m in redis["volumeMounts"]}
    claims = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    assert mounts["/data"] in claims
    assert claims[mounts["/data"]]["spec"]["resources"]["requests"]["storage"] == "8Gi"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/redis"]]["configMap"]["name"] == conf_map["metadata"]["name"]
    assert redis["securityContext"]["readOnlyRootFilesystem"] is True


def test_only_humtemp_pods_reach_the_shards() -> None:
    objs = docs("defaults")
    pol = km.one(objs, "NetworkPolicy")
    sts_labels = km.one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert km.labels_match(pol["spec"]["podSelector"]["matchLabels"], sts_labels)
    (rule,) = pol["spec"]["ingress"]
    (peer,) = rule["from"]
    app_sel = km.one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert peer["podSelector"]["matchLabels"] == app_sel
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    assert km.by_kind(docs("external"), "NetworkPolicy") == []


def test_no_persistence_uses_emptydir() -> None:
    sts = km.one(docs("workers-no-persistence"), "StatefulSet")
    assert "volumeClaimTemplates" not in sts["spec"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_redis_password_from_generated_secret() -> None:
    objs = docs("auth")
    secret = km.one(objs, "Secret")
    assert "redis-password" in secret["data"]
    env = app_container(objs)["env"]
    names = [e["name"] for e in env]
    # $(REDIS_PASSWORD) only expands when the variable is defined earlier in the list.
    assert names.index("REDIS_PASSWORD") < names.index("HUMTEMP_REDIS_URLS")
    ref = env[names.index("REDIS_PASSWORD")]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": secret["metadata"]["name"], "key": "redis-password"}
    (redis,) = km.one(objs, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert redis["args"][1:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert env_of(redis)["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"] == ref


def test_redis_password_from_existing_secret() -> None:
    objs = docs("auth-existing")
    assert km.by_kind(objs, "Secret") == []
    ref = env_of(app_container(objs))["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "my-redis", "key": "redis-password"}


def test_external_shards_replace_the_statefulset() -> None:
    objs = docs("external")
    assert km.by_kind(objs, "StatefulSet") == [] and km.by_kind(objs, "ConfigMap") == []
    assert [s["metadata"]["name"] for s in km.by_kind(objs, "Service")] == [FULLNAME]
    assert shard_entries(objs) == [(s["name"], s["url"]) for s in EXTERNAL]
    names = [e["name"] for e in app_container(objs)["env"]]
    assert names.index("MANAGED_REDIS_PASSWORD") < names.index("HUMTEMP_REDIS_URLS")


def test_deployment_probes_security_and_drain() -> None:
    objs = docs("defaults")
    dep = km.one(objs, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = app_container(objs)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"] and c["resources"]["limits"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    # Writable scratch space on a read-only root filesystem.
    volumes = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
    # SIGKILL must not come before the preStop delay plus the drain.
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep" and int(sleep[1]) > 0
    drain = int(env_of(c)["HUMTEMP_SHUTDOWN_TIMEOUT"]["value"])
    assert pod["terminationGracePeriodSeconds"] > int(sleep[1]) + drain
    assert c["args"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_app_and_shard_pods_are_disjoint() -> None:
    """The app Service must never send traffic to a Redis pod (and vice versa)."""
    objs = docs("defaults")
    app_sel = km.one(objs, "Deployment")["spec"]["selector"]["matchLabels"]
    sts_labels = km.one(objs, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert not km.labels_match(app_sel, sts_labels)


def test_readers_off_by_default() -> None:
    objs = docs("defaults")
    assert [d["metadata"]["name"] for d in km.by_kind(objs, "Deployment")] == [FULLNAME]
    assert all("readers" not in o["metadata"]["name"] for o in objs)


def test_readers_deployment_serves_summaries_by_path() -> None:
    """readers.enabled: a second Deployment of the same image, its own Service, HPA and
    PDB; the ingress sends /summary* to it and everything else to the server pods."""
    objs = docs("readers")
    readers = f"{FULLNAME}-readers"
    deps = {d["metadata"]["name"]: d for d in km.by_kind(objs, "Deployment")}
    assert set(deps) == {FULLNAME, readers}
    server, reader = deps[FULLNAME], deps[readers]
    server_pod = server["spec"]["template"]["spec"]["containers"][0]
    reader_pod = reader["spec"]["template"]["spec"]["containers"][0]
    assert reader_pod["image"] == server_pod["image"] and reader_pod["env"] == server_pod["env"]
    assert env_of(reader_pod)["HUMTEMP_READ_CACHE_SECONDS"]["value"] == "0.5"
    assert env_of(reader_pod)["HUMTEMP_MAX_LABS_PER_BUCKET"]["value"] == "1000000"
    assert "replicas" not in reader["spec"] and server["spec"]["replicas"] == 2
    # Disjoint pods: neither Deployment nor Service selects the other's pods.
    services = {s["metadata"]["name"]: s for s in km.by_kind(objs, "Service")}
    for dep, other in ((server, reader), (reader, server)):
        sel = dep["spec"]["selector"]["matchLabels"]
        assert km.labels_match(sel, dep["spec"]["template"]["metadata"]["labels"])
        assert not km.labels_match(sel, other["spec"]["template"]["metadata"]["labels"])
        svc = services[dep["metadata"]["name"]]
        assert svc["spec"]["selector"] == sel
    hpas = {h["metadata"]["name"]: h for h in km.by_kind(objs, "HorizontalPodAutoscaler")}
    assert hpas[readers]["spec"]["scaleTargetRef"]["name"] == readers
    assert (hpas[readers]["spec"]["minReplicas"], hpas[readers]["spec"]["maxReplicas"]) == (2, 5)
    pdbs = {p["metadata"]["name"]: p for p in km.by_kind(objs, "PodDisruptionBudget")}
    assert pdbs[readers]["spec"]["selector"]["matchLabels"] == reader["spec"]["selector"][
        "matchLabels"]
    (rule,) = km.one(objs, "Ingress")["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}
    assert routes == {"/summary": readers, "/": FULLNAME}
    # The shards admit both kinds of pod; the ServiceMonitor scrapes both Services.
    policy = km.one(objs, "NetworkPolicy")
    peers = [peer["podSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]]
    for dep in (server, reader):
        assert any(km.labels_match(p, dep["spec"]["template"]["metadata"]["labels"])
                   for p in peers)
    monitors = km.by_kind(objs, "ServiceMonitor")
    for svc in (services[FULLNAME], services[readers]):
        assert sum(km.labels_match(m["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
                   for m in monitors) == 1


def test_multiple_workers_get_a_writable_metrics_dir() -> None:
    """humtemp mkdtemp()s its multiprocess metrics dir in TMPDIR: that must be an emptyDir.

    A fixed PROMETHEUS_MULTIPROC_DIR on an emptyDir would keep the files of the previous
    container (same PIDs in a new PID namespace) after a restart, so none is set.
    """
    objs = docs("workers-no-persistence")
    c = app_container(objs)
    env = env_of(c)
    assert env["HUMTEMP_WORKERS"]["value"] == "2"
    assert "PROMETHEUS_MULTIPROC_DIR" not in env
    pod = km.one(objs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "emptyDir" in volumes[mounts[env["TMPDIR"]["value"]]]


def test_ingress_routes_to_the_service() -> None:
    objs = docs("ingress")
    ing = km.one(objs, "Ingress")
    svc = next(s for s in km.by_kind(objs, "Service") if s["metadata"]["name"] == FULLNAME)
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["tls"] == [{"hosts": ["sensors.example.com"], "secretName": "sensors-tls"}]
    (rule,) = ing["spec"]["rules"]
    assert rule["host"] == "sensors.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == svc["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in svc["spec"]["ports"]}
    assert svc["spec"]["ports"][0]["name"] == "http"


def test_autoscaling_owns_the_replica_count() -> None:
    objs = docs("autoscaling")
    dep = km.one(objs, "Deployment")
    hpa = km.one(objs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert "replicas" not in dep["spec"]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert app_container(objs)["resources"]["requests"]["cpu"]  # utilisation needs a request
    pdbs = km.by_kind(objs, "PodDisruptionBudget")
    dep_pdb = next(p for p in pdbs if p["metadata"]["name"] == dep["metadata"]["name"])
    assert dep_pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_monitoring_objects_use_the_shared_files() -> None:
    objs = docs("monitoring")
    sm = km.one(objs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"][0]["path"] == "/metrics"
    rule = km.one(objs, "PrometheusRule")
    alerts = yaml.safe_load((CHART / "files" / "alerts.yaml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"]
    maps = km.by_kind(objs, "ConfigMap")
    dash = [c for c in maps if c["metadata"]["name"].endswith("-dashboard")]
    assert len(dash) == 1 and dash[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dash[0]["metadata"]["annotations"] == {"grafana_folder": "humtemp"}
    expected = json.loads((CHART / "files" / "dashboard.json").read_text())
    assert json.loads(dash[0]["data"]["humtemp.json"]) == expected
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert km.by_kind(docs("defaults"), kind) == []


def test_helm_test_hook_posts_and_reads_back() -> None:
    pod = km.one(docs("defaults"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (c,) = pod["spec"]["containers"]
    assert c["image"] == app_container(docs("defaults"))["image"]
    assert c["command"] == ["python3", "-c"]
    script = c["args"][0]
    assert script == (CHART / "files" / "smoke_test.py").read_text()
    compile(script, "smoke_test.py", "exec")
    assert "/observation" in script and "/summary/lab" in script
    url = env_of(c)["HUMTEMP_URL"]["value"]
    assert url == f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:80"


# --- values schema and template guards ---------------------------------------------------------

BAD_VALUES = {
    "typo-top-level": {"replicaCont": 3},
    "typo-nested": {"redis": {"shardz": 3}},
    "zero-replicas": {"replicaCount": 0},
    "string-replicas": {"replicaCount": "two"},
    "zero-shards": {"redis": {"shards": 0}},
    "bad-fsync": {"redis": {"appendfsync": "sometimes"}},
    "bad-on-shard-down": {"config": {"onShardDown": "drop"}},
    "bad-pull-policy": {"image": {"pullPolicy": "Sometimes"}},
    "port-out-of-range": {"service": {"port": 70000}},
    "external-without-url": {"externalShards": [{"name": "a"}]},
    "external-http-url": {"externalShards": [{"name": "a", "url": "http://x:6379"}]},
    "scrape-interval": {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
    "ingress-path-type": {
        "ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Any"}]}]}
    },
    "password-not-url-safe": {"redis": {"auth": {"password": "p@ss:word"}}},
    "hpa-cpu-percent": {"autoscaling": {"targetCPUUtilizationPercentage": 150}},
}


@pytest.mark.parametrize("name", list(BAD_VALUES))
def test_schema_rejects_bad_values(name: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(BAD_VALUES[name])


def test_schema_accepts_every_case() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for values in CASES.values():
            chart.validate_schema(values)


@pytest.mark.parametrize(
    "values,message",
    [
        ({"externalShards": EXTERNAL}, "redis.enabled=false"),
        ({"redis": {"enabled": False}}, "externalShards"),
        ({"terminationGracePeriodSeconds": 20}, "terminationGracePeriodSeconds"),
        ({"config": {"minLiveShards": 4}}, "minLiveShards"),
    ],
)
def test_templates_refuse_inconsistent_values(values: dict, message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError, match=message):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


# --- documentation -----------------------------------------------------------------------------

PARAM = re.compile(r"^\s*## @param ([\w.]+)", re.M)


def leaf_paths(values: dict, prefix: str = "") -> list[str]:
    """Dotted paths of every value (maps and lists with content count as leaves themselves)."""
    paths = []
    for key, val in values.items():
        path = f"{prefix}{key}"
        if isinstance(val, dict) and val:
            paths += leaf_paths(val, path + ".")
        else:
            paths.append(path)
    return paths


def test_every_value_is_documented() -> None:
    text = (CHART / "values.yaml").read_text()
    params = set(PARAM.findall(text))
    for path in leaf_paths(yaml.safe_load(text)):
        parts = path.split(".")
        prefixes = {".".join(parts[: i + 1]) for i in range(len(parts))}
        assert prefixes & params, f"values.yaml: {path} has no ## @param"
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    missing = [p for p in params if f"`{p}`" not in deploy]
    assert not missing, f"docs/deploy.md values table lacks {missing}"


def test_capacity_profile_matches_docs_capacity() -> None:
    """docs/capacity.md's table and values-100k.yaml must say the same numbers."""
    profile = CASES["capacity-100k"]
    doc = (ROOT / "docs/capacity.md").read_text()
    rows = re.finditer(r"^\| `([\w.]+)` \| ([^|]+?) \|", doc, re.M)
    table = {m.group(1): m.group(2).strip('`"') for m in rows}
    for path, documented in table.items():
        value = profile
        for key in path.split("."):
            value = value[key]
        assert str(value) == documented, path
    assert len(table) == 6
    objs = rendered("capacity-100k")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (12, 18)
    sts = next(o for o in objs if o["kind"] == "StatefulSet")
    assert sts["spec"]["replicas"] == 5
