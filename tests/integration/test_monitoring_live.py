"""A real Prometheus scraping a real humtemp (3 redis-server shards) under load.

Proves the dashboard and the alert rules against live data: every panel query is accepted and
returns data, the template variables resolve to the scraped target, the rules load healthy, and
`promtool check metrics` is silent on a live /metrics.

Two humtemp processes share the shards and the job (two `instance`s, like two pods): "a" runs
2 workers in the default re-route mode, "b" one worker with HUMTEMP_ON_SHARD_DOWN=reject. Near
the end of the load one shard is killed, so the error, re-route and 5xx panels show real data
rather than their zero fallbacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitoring import check
from tests.support.http import HumtempProcess
from tests.support.redis_server import RedisServer, free_port
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

LOAD_SECONDS = 12.0
KILL_BEFORE_END = 4.0  # seconds before the end of the load that shard s3 is killed
MAX_REQUESTS = 30_000
CONCURRENCY = 8
WINDOW = "30s"  # replaces $__rate_interval: covers the whole load at a 1 s scrape interval
NAMESPACE = "itest"
JOB = "humtemp"


def _http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait(what: str, ready: Callable[[], object], timeout: float) -> None:
    wait_until(ready, timeout, what, ignoring=(OSError,))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _humtemp(tmp: Path, urls: str, workers: int, on_shard_down: str) -> HumtempProcess:
    """Started, not yet ready (the caller registers it for cleanup first)."""
    env = {
        "HUMTEMP_REDIS_URLS": urls,
        "HUMTEMP_ON_SHARD_DOWN": on_shard_down,
        "HUMTEMP_LOG_LEVEL": "warning",
        # this checkout's humtemp, whatever else is installed
        "PYTHONPATH": os.pathsep.join(filter(None, [str(check.REPO), os.getenv("PYTHONPATH")])),
    }
    args = ("--host", "127.0.0.1", "--workers", str(workers))
    return HumtempProcess(env, tmp, args)


@dataclass
class Stack:
    """Everything the tests look at, built once per module."""

    prom_url: str
    humtemp_urls: dict[str, str]  # instance name -> base URL
    instances: dict[str, str] = field(default_factory=dict)  # name -> "127.0.0.1:port"
    metrics_bodies: dict[str, bytes] = field(default_factory=dict)
    load: dict[str, int] = field(default_factory=dict)
    eval_time: float = 0.0


def _start_prometheus(tmp: Path, targets: list[str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": [str(check.ALERTS)],
        "scrape_configs": [{
            "job_name": JOB,
            "static_configs": [{"targets": targets, "labels": {"namespace": NAMESPACE}}],
        }],
    }  # fmt: skip
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = (tmp / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'prom'}", f"--web.listen-address=127.0.0.1:{port}",
         "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    _wait("prometheus", lambda: _http_get(f"{url}/-/ready", timeout=1)[0] == 200, 20)
    return proc, url


def prom_query(prom_url: str, expr: str, at: float | None = None) -> dict[str, Any]:
    params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
    status, body = _http_get(f"{prom_url}/api/v1/query?{urllib.parse.urlencode(params)}")
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", f"{expr}\n-> {status} {doc}"
    return doc["data"]


def _scraped_all(prom_url: str, n_targets: int) -> bool:
    return len(prom_query(prom_url, f'up{{job="{JOB}"}} == 1')["result"]) == n_targets


# --- load --------------------------------------------------------------------------------


def _observation(rng: random.Random) -> dict[str, Any]:
    return {
        "lab_id": f"lab{rng.randrange(40):02d}",
        "timestamp": int(time.time()) - rng.randrange(60),
        "temp": round(rng.uniform(15, 30), 2),
        "humidity": round(rng.uniform(20, 80), 2),
    }


async def _one_request(
    session: aiohttp.ClientSession, base: str, rng: random.Random
) -> tuple[str, int, int]:
    """One request of the mix: mostly writes, some reads, a few invalid ones.

    Returns (kind, HTTP status, observations the request carried)."""
    roll, size = rng.random(), 0
    if roll < 0.60:
        size = 1
        kind, resp = "single", session.post(f"{base}/observation", json=_observation(rng))
    elif roll < 0.78:
        size = rng.randrange(2, 60)
        batch = [_observation(rng) for _ in range(size)]
        kind, resp = "batch", session.post(f"{base}/observations", json=batch)
    elif roll < 0.84:
        size = rng.randrange(2, 30)
        lines = "\n".join(json.dumps(_observation(rng)) for _ in range(size))
        kind, resp = "ndjson", session.post(
            f"{base}/observations", data=lines,
            headers={"Content-Type": "application/x-ndjson"},
        )  # fmt: skip
    elif roll < 0.90:
        path = rng.choice(["/summary?offset=0", "/summary/detail?offset=0",
                           "/summary/lab?lab_id=lab01&offset=0"])  # fmt: skip
        kind, resp = "read", session.get(f"{base}{path}")
    elif roll < 0.96:
        bad = _observation(rng) | {"humidity": 150.0}
        kind, resp = "invalid", session.post(f"{base}/observation", json=bad)
    else:
        kind, resp = "malformed", session.post(
            f"{base}/observation", data=b"{not json", headers={"Content-Type": "application/json"}
        )
    async with resp as r:
        await r.read()
        return kind, r.status, size


async def _run_load(bases: list[str], kill_shard: Any) -> dict[str, int]:
    """Bounded in time and count; kills a shard KILL_BEFORE_END seconds before the end."""
    counts: dict[str, int] = {}
    end = time.monotonic() + LOAD_SECONDS
    kill_at = end - KILL_BEFORE_END
    sent = 0

    async def worker(i: int) -> None:
        nonlocal sent
        rng = random.Random(i)
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < end and sent < MAX_REQUESTS:
                sent += 1
                try:
                    kind, status, size = await _one_request(session, bases[i % len(bases)], rng)
                except (aiohttp.ClientError, TimeoutError):
                    kind, status, size = "error", 0, 0
                key = f"{kind} {status}"
                counts[key] = counts.get(key, 0) + 1
                if status == 200:
                    counts["accepted observations"] = counts.get("accepted observations", 0) + size

    async def killer() -> None:
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        kill_shard()

    await asyncio.gather(killer(), *(worker(i) for i in range(CONCURRENCY)))
    return counts


# --- the stack ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("monitoring")
    procs: list[subprocess.Popen[bytes]] = []
    shards = {name: RedisServer(tmp, name, appendonly=False) for name in ("s1", "s2", "s3")}
    try:
        for shard in shards.values():
            shard.start()
        urls = ",".join(s.spec for s in shards.values())
        humtemps = {}
        for name, workers, mode in (("a", 2, "reroute"), ("b", 1, "reject")):
            server = _humtemp(tmp, urls, workers, mode)
            procs.append(server.proc)
            humtemps[name] = server.wait_ready(30).base
        instances = {n: u.removeprefix("http://") for n, u in humtemps.items()}
        prom, prom_url = _start_prometheus(tmp, list(instances.values()))
        procs.append(prom)
        _wait("first scrape", lambda: _scraped_all(prom_url, len(instances)), 30)

        s3 = shards["s3"]
        load = asyncio.run(_run_load(list(humtemps.values()), s3.kill))
        load_end = time.time()
        # let Prometheus scrape (and evaluate the rules) at least twice after the load
        _wait(
            "scrape after load",
            lambda: all(
                float(r["value"][1]) > load_end + 1
                for r in prom_query(prom_url, f'timestamp(up{{job="{JOB}"}})')["result"]
            ),
            15,
        )  # fmt: skip
        bodies = {n: _http_get(f"{u}/metrics")[1] for n, u in humtemps.items()}
        yield Stack(prom_url, humtemps, instances, bodies, load, eval_time=time.time())
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for shard in shards.values():
            shard.stop()


# --- tests -------------------------------------------------------------------------------


def test_load_exercised_every_kind_of_request(stack: Stack) -> None:
    ok = {k.split()[0] for k, n in stack.load.items() if k.endswith(" 200") and n}
    assert {"single", "batch", "ndjson", "read"} <= ok, stack.load
    assert stack.load.get("invalid 422", 0) > 0, stack.load
    assert stack.load.get("malformed 400", 0) > 0, stack.load
    assert sum(stack.load.values()) >= 500, stack.load


def test_scraped_counts_match_what_the_load_saw(stack: Stack) -> None:
    """Acknowledged observations, as Prometheus saw them over both instances (one with 2
    workers: its /metrics must answer for both), equal the 200s the load received."""
    expr = f'sum(humtemp_observations_accepted_total{{job="{JOB}"}})'
    (sample,) = prom_query(stack.prom_url, expr, stack.eval_time)["result"]
    assert float(sample["value"][1]) == stack.load["accepted observations"]


def _panel_results(stack: Stack, value_of: dict[str, str]) -> dict[check.PanelQuery, int]:
    out = {}
    for query in check.panel_queries(check.load_dashboard()):
        expr = check.substitute(query.expr, WINDOW)
        for var, value in value_of.items():
            expr = expr.replace(f'{var}=~".*"', f'{var}=~"{value}"')
        out[query] = len(prom_query(stack.prom_url, expr, stack.eval_time)["result"])
    return out


def test_every_panel_query_returns_data_with_all_selected(stack: Stack) -> None:
    results = _panel_results(stack, {})
    empty = [q for q, n in results.items() if n == 0]
    assert not empty, empty
    assert len(results) >= 30


def test_every_panel_query_returns_data_for_one_selected_instance(stack: Stack) -> None:
    """The variables as Grafana would fill them for one pod: its namespace, job, instance."""
    for instance in stack.instances.values():
        # Grafana regex-escapes the value, then escapes the backslashes for the PromQL string
        escaped = re.escape(instance).replace("\\", "\\\\")
        values = {"namespace": NAMESPACE, "job": JOB, "instance": escaped}
        empty = [q for q, n in _panel_results(stack, values).items() if n == 0]
        assert not empty, (instance, empty)


def test_zero_fallbacks_are_not_what_returned_the_data(stack: Stack) -> None:
    """Error panels fall back to 0 when nothing failed; here real failures must show."""
    for query in check.panel_queries(check.load_dashboard()):
        expr = check.substitute(query.expr, WINDOW)
        if "\nor " not in expr and " or vector(0)" not in expr:
            continue
        primary = expr.split("\nor ")[0].replace(" or vector(0)", "")
        found = prom_query(stack.prom_url, primary, stack.eval_time)["result"]
        assert found, f"{query.panel} {query.ref_id}: only the fallback has data"


def test_template_variables_resolve_to_the_scraped_targets(stack: Stack) -> None:
    for var in check.variable_queries(check.load_dashboard()):
        selector = check.substitute(var.selector)
        params = urllib.parse.urlencode({"match[]": selector})
        status, body = _http_get(f"{stack.prom_url}/api/v1/series?{params}")
        assert status == 200, body
        values = {s.get(var.label) for s in json.loads(body)["data"]}
        expected = {
            "namespace": {NAMESPACE}, "job": {JOB}, "instance": set(stack.instances.values())
        }[var.label]  # fmt: skip
        assert values == expected, (var, values)


def test_every_metric_on_the_dashboard_is_exposed(stack: Stack) -> None:
    """A metric name typo cannot hide behind a panel's zero fallback."""
    dashboard = check.load_dashboard()
    used = set().union(*(check.metric_names(q.expr) for q in check.panel_queries(dashboard)))
    for name, body in stack.metrics_bodies.items():
        families = set(re.findall(rb"^# TYPE (\S+) ", body, re.M))
        exposed = {f.decode() for f in families}
        exposed |= {f"{f}_total" for f in exposed}  # the TYPE line names counters without it
        assert used <= exposed, (name, used - exposed)


def test_live_metrics_pass_promtool_check_metrics(stack: Stack) -> None:
    findings = {}
    for name, body in stack.metrics_bodies.items():
        assert b"humtemp_http_requests_total" in body
        proc = subprocess.run(
            [check.PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30,
            check=False,
        )  # fmt: skip
        if proc.returncode or proc.stdout or proc.stderr:
            findings[name] = (proc.returncode, (proc.stdout + proc.stderr).decode())
    assert not findings, findings


def test_alert_rules_loaded_and_healthy(stack: Stack) -> None:
    expected = yaml.safe_load(check.ALERTS.read_text())["groups"]

    def healthy() -> bool:
        status, body = _http_get(f"{stack.prom_url}/api/v1/rules")
        groups = json.loads(body)["data"]["groups"]
        return status == 200 and all(r["health"] == "ok" for g in groups for r in g["rules"])

    _wait("rules evaluated", healthy, 10)
    groups = json.loads(_http_get(f"{stack.prom_url}/api/v1/rules")[1])["data"]["groups"]
    assert [g["name"] for g in groups] == [g["name"] for g in expected]
    for got, want in zip(groups, expected, strict=True):
        assert [r["name"] for r in got["rules"]] == [r["alert"] for r in want["rules"]]
        for rule in got["rules"]:
            assert rule["health"] == "ok" and not rule.get("lastError"), rule


def test_shard_down_alert_is_pending_for_the_killed_shard(stack: Stack) -> None:
    """The killed shard trips HumtempShardDown's expression (it then waits for its `for:`)."""

    def pending() -> list[dict[str, Any]]:
        alerts = json.loads(_http_get(f"{stack.prom_url}/api/v1/alerts")[1])["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "HumtempShardDown"]

    _wait("HumtempShardDown pending", lambda: bool(pending()), 10)
    by_shard = {a["labels"]["shard"]: a for a in pending()}
    assert "s3" in by_shard, by_shard
    alert = by_shard["s3"]
    assert alert["state"] == "pending"  # its `for: 2m` has not elapsed
    assert alert["labels"]["namespace"] == NAMESPACE and alert["labels"]["job"] == JOB
    assert alert["labels"]["severity"] == "critical"


def test_static_checks_pass_too() -> None:
    """The CI gate of the issue in one place: check rules, test rules, dashboard syntax."""
    assert check.check_rules().returncode == 0
    assert check.test_rules().returncode == 0
    exprs = [check.substitute(q.expr, WINDOW) for q in check.panel_queries(check.load_dashboard())]
    assert check.check_promql_syntax(exprs).returncode == 0
