"""humtemp Locust scenarios: sensor fleet, gateways, dashboards, with end-of-run verification.

Select scenarios by user class (`locust -f loadtest/locustfile.py SensorUser DashboardUser`)
or by tag (`--tags sensor`, `--tags write`, `--exclude-tags ndjson`); tune them with the
`--ht-*` flags or HUMTEMP_LT_* env vars (`locust --help` lists them).  Every acknowledged
write is recorded per (lab, bucket); at test stop the master (or the single process)
gathers the workers' records and checks them against `GET /summary/lab` and `GET /summary`.
A mismatch is logged lab by lab and makes Locust exit 1.  Gateway batches (all writes
with `--ht-keys all`) carry an Idempotency-Key and are retried with it on 5xx, connection
errors and timeouts; the ledger counts each once, with its final outcome.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, constant, constant_pacing, events, tag, task
from locust.runners import MasterRunner, WorkerRunner

# locust only puts loadtest/ on sys.path; not resolve(): a Kubernetes ConfigMap mount makes
# every file a symlink into a hidden ..data directory
sys.path.insert(0, str(Path(__file__).absolute().parent.parent))

from loadtest import distributed, options
from loadtest.ledger import Ledger
from loadtest.options import Scenario
from loadtest.retry import NO_RETRY, REJECTED, STORED, UNKNOWN, Attempt, Attempts
from loadtest.workload import lab_name, observation

log = logging.getLogger("humtemp.loadtest")
STATE = distributed.RunState()


def _wait(pacing: float) -> Any:
    return constant_pacing(pacing) if pacing > 0 else constant(0)


class _HumtempUser(FastHttpUser):
    abstract = True

    def _rng(self) -> random.Random:
        if not hasattr(self, "rng"):
            self.rng = random.Random()
        return self.rng

    def _auth(self, read: bool = False) -> dict[str, str]:
        token = STATE.scenario.read_token if read else STATE.scenario.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _random_lab(self) -> str:
        return lab_name(STATE.scenario.prefix, self._rng().randrange(STATE.scenario.labs))

    def _post(self, path: str, body: str, ctype: str, batch: list[dict], name: str,
              scenario: str) -> None:
        """POST, retried if keyed; record the write in the ledger once, with its final
        outcome. Every attempt is a Locust sample; a failed one is a failure."""
        keyed = scenario in STATE.scenario.keyed
        headers = {"Content-Type": ctype, **self._auth()}
        if keyed:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        retried = keyed or STATE.scenario.blind_retries
        policy = STATE.scenario.retry if retried else NO_RETRY
        data = body.encode()  # a retry sends the very same bytes
        keys = STATE.ledger.begin(batch, STATE.clock.bucket_of)
        write = Attempts()
        started = time.monotonic()
        try:
            while True:
                write.start()
                with self.client.post(path, data=data, headers=headers, name=name,
                                      catch_response=True) as resp:
                    attempt = _judge(resp, path, len(batch))
                write.record(attempt)
                wait = policy.delay(attempt, write.sent, time.monotonic() - started)
                if wait is None:
                    break
                gevent.sleep(wait)
        finally:  # also when the run stops mid-retry: then the outcome stays unknown
            STATE.ledger.settle(keys, batch, write.outcome)
            STATE.ledger.retries.add(write)


def _judge(resp: Any, path: str, n: int) -> Attempt:
    status = resp.status_code or 0
    if 200 <= status < 300:
        expected: Any = None if path == "/observation" else {"accepted": n}
        try:
            body = resp.json()
        except Exception:
            body = "<not json>"
        if body == expected:
            return Attempt(STORED, status)
        resp.failure(f"2xx with unexpected body {str(body)[:200]}")
        return Attempt(UNKNOWN, status, "unexpected_body")
    resp.failure(f"HTTP {status}: {(resp.text or '')[:200]}")
    outcome = REJECTED if 400 <= status < 500 else UNKNOWN
    return Attempt(outcome, status, _error_code(resp),
                   (resp.headers or {}).get("Retry-After"))


def _error_code(resp: Any) -> str:
    """The `error` field of a JSON error body, or "" (no answer, or not our JSON)."""
    try:
        body = resp.json()
    except Exception:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""


class SensorUser(_HumtempUser):
    """One lab posting single observations (30 s pacing by default, 0 = flat out)."""

    wait_time = constant_pacing(30)

    def on_start(self) -> None:
        self.lab = lab_name(STATE.scenario.prefix, STATE.next_sensor_lab())

    @tag("sensor", "write", "single")
    @task
    def post_observation(self) -> None:
        obs = observation(self.lab, self._rng(), STATE.scenario.jitter)
        self._post("/observation", json.dumps(obs), "application/json", [obs], "/observation",
                   "sensor")


class GatewayUser(_HumtempUser):
    """A gateway forwarding batches for many labs, as a JSON array or as NDJSON."""

    wait_time = constant_pacing(1)

    def _batch(self) -> list[dict]:
        rng, jitter = self._rng(), STATE.scenario.jitter
        return [observation(self._random_lab(), rng, jitter)
                for _ in range(STATE.scenario.batch_size)]

    @tag("gateway", "write", "batch", "json")
    @task
    def post_json_batch(self) -> None:
        batch = self._batch()
        self._post("/observations", json.dumps(batch), "application/json", batch,
                   "/observations [json]", "gateway")

    @tag("gateway", "write", "batch", "ndjson")
    @task
    def post_ndjson_batch(self) -> None:
        batch = self._batch()
        body = "\n".join(json.dumps(o) for o in batch) + "\n"
        self._post("/observations", body, "application/x-ndjson", batch,
                   "/observations [ndjson]", "gateway")


class DashboardUser(_HumtempUser):
    """A dashboard reading the all-labs summary (original API) and one lab's detail."""

    wait_time = constant_pacing(5)

    @tag("dashboard", "read", "summary")
    @task(2)
    def summary(self) -> None:
        offset = self._rng().choice((0, -1))
        with self.client.get(f"/summary?offset={offset}", name="/summary",
                             headers=self._auth(read=True), catch_response=True) as resp:
            items = resp.json() if resp.status_code == 200 else None
            if not isinstance(items, list) or any(
                    set(i) != {"lab_id", "avg_temp", "avg_humidity"} for i in items):
                resp.failure(f"HTTP {resp.status_code}: not a summary list")

    @tag("dashboard", "read", "lab")
    @task(1)
    def lab_summary(self) -> None:
        with self.client.get(f"/summary/lab?lab_id={self._random_lab()}&offset=0",
                             name="/summary/lab", headers=self._auth(read=True),
                             catch_response=True) as resp:
            body = resp.json() if resp.status_code == 200 else None
            if not isinstance(body, dict) or "count" not in body:
                resp.failure(f"HTTP {resp.status_code}: not a lab summary")


def _configure(environment: Any) -> None:
    """Apply --ht-* settings to the user classes (weights on the master, pacing where users run)."""
    scenario = Scenario.from_options(environment.parsed_options)
    STATE.scenario = scenario
    for name, cls in (("sensor", SensorUser), ("gateway", GatewayUser),
                      ("dashboard", DashboardUser)):
        cls.weight = scenario.weights.get(name, 0) if scenario.weights else 1
    SensorUser.wait_time = _wait(scenario.sensor_pacing)
    GatewayUser.wait_time = _wait(scenario.gateway_pacing)
    DashboardUser.wait_time = _wait(scenario.dashboard_pacing)


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    options.add_arguments(parser)


@events.init.add_listener
def _on_init(environment: Any, **_: Any) -> None:
    if environment.parsed_options is not None:
        _configure(environment)
    distributed.install(environment, STATE)


@events.test_start.add_listener
def _on_test_start(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        STATE.new_test(environment.parsed_options)
    _configure(environment)  # workers only now have the master's --ht-* values
    STATE.ledger = Ledger()
    if not isinstance(environment.runner, MasterRunner):
        STATE.learn_clock(environment.host)
        if isinstance(environment.runner, WorkerRunner):
            STATE.worker_index = max(environment.runner.worker_index, 0)


@events.test_stop.add_listener
def _on_test_stop(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        distributed.collect_and_verify(environment, STATE)
