"""Per-process run state and the master/worker exchange of ledgers.

Why a custom exchange: in a headless distributed run Locust's master fires
`test_stop` *before* its workers have stopped their users, then kills its message
loop 0.5 s after telling them to quit.  So the master's `test_stop` handler asks
every worker ("humtemp_collect") to stop its users gracefully and send back its
ledger ("humtemp_ledger"), waits for all of them, merges, and only then verifies.
The same path works when the web UI stopped the workers already.  Each worker sends
its last stats before its ledger, so the master's failure count is complete when it
decides the exit code.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gevent
from locust.runners import MasterRunner, WorkerRunner

from loadtest.ledger import Ledger
from loadtest.options import Scenario, prefix_for_test
from loadtest.verify import HttpSummaryClient, Verification, verify
from loadtest.workload import BucketClock

log = logging.getLogger("humtemp.loadtest")
COLLECT, LEDGER = "humtemp_collect", "humtemp_ledger"


@dataclass
class RunState:
    scenario: Scenario | None = None  # type: ignore[assignment]
    ledger: Ledger = field(default_factory=Ledger)
    clock: BucketClock = field(default_factory=lambda: BucketClock(0, 86400))
    worker_index: int = 0
    replies: dict[str, Ledger] = field(default_factory=dict)
    tests: int = 0
    base_prefix: str = ""
    _counter: itertools.count = field(default_factory=itertools.count)

    def new_test(self, opts: Any) -> None:
        """On the master (or single process), before workers get the options: a later test
        of the same Locust process (web UI "New test") gets its own lab prefix, so its
        verification does not see the labs the earlier tests wrote."""
        if self.tests == 0:
            self.base_prefix = opts.ht_prefix
        self.tests += 1
        opts.ht_prefix = prefix_for_test(self.base_prefix, self.tests)

    def next_sensor_lab(self) -> int:
        """Lab index for a new sensor user: distinct per worker until the pool wraps."""
        assert self.scenario is not None
        return (self.worker_index * 7919 + next(self._counter)) % self.scenario.labs

    def learn_clock(self, host: str | None) -> None:
        """Ask the service for its current bucket: map timestamps to buckets exactly as it does."""
        assert self.scenario is not None and host
        client = HttpSummaryClient(host, token=self.scenario.read_token)
        cur = client.lab(self.scenario.prefix + "probe", 0)
        start = int(cur["bucket_start"])
        self.clock = BucketClock(start, int(cur["bucket_end"]) - start)


def install(environment: Any, state: RunState) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        # forked --processes workers keep --json-file: only the master may write it
        if environment.parsed_options is not None:
            environment.parsed_options.json_file = None

        def on_collect(environment: Any, msg: Any, **_: Any) -> None:
            environment.runner.stop()  # graceful: waits --stop-timeout for in-flight tasks
            # the samples of the last seconds: Locust itself sends them only on "quit"
            environment.runner._send_stats()
            environment.runner.send_message(LEDGER, state.ledger.to_wire())

        runner.register_message(COLLECT, on_collect, concurrent=True)
    elif isinstance(runner, MasterRunner):

        def on_ledger(environment: Any, msg: Any, **_: Any) -> None:
            state.replies[msg.node_id] = Ledger.from_wire(msg.data)

        runner.register_message(LEDGER, on_ledger)


def _gather(environment: Any, state: RunState) -> tuple[Ledger, list[str]]:
    """On the master: every worker's ledger merged, and the workers that never answered."""
    runner = environment.runner
    state.replies.clear()
    expected = {c.id for c in runner.clients.all}
    runner.send_message(COLLECT, None)
    deadline = time.monotonic() + (environment.stop_timeout or 0) + 30
    while set(state.replies) < expected and time.monotonic() < deadline:
        gevent.sleep(0.1)
    merged = Ledger()
    for ledger in state.replies.values():
        merged.merge(ledger)
    return merged, sorted(expected - set(state.replies))


def collect_and_verify(environment: Any, state: RunState) -> Verification | None:
    scenario = state.scenario
    if scenario is None or not scenario.verify:
        return None
    missing: list[str] = []
    if isinstance(environment.runner, MasterRunner):
        ledger, missing = _gather(environment, state)
    else:
        ledger = state.ledger
    client = HttpSummaryClient(environment.host, token=scenario.read_token)
    result = verify(ledger, client, scenario.prefix, lab_sample=scenario.verify_labs)
    if missing:
        result.ok = False
        result.errors.append(f"no ledger from workers {missing}: their writes are unverified")
    for line in result.lines():
        (log.info if result.ok else log.error)(line)
    if scenario.verify_file:
        path = Path(scenario.verify_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        report = {"prefix": scenario.prefix, **result.as_dict()}
        path.write_text(json.dumps(report, indent=2))
    if not result.ok:
        environment.process_exit_code = 1
    elif scenario.recovered_ok:
        environment.process_exit_code = exit_code_tolerating_recovered(environment, result)
    return result


def exit_code_tolerating_recovered(environment: Any, result: Verification) -> int:
    """0 if every failed request was an attempt of a write a retry stored later (and no
    user code raised); Locust's own rule (exit 1 on any failure) would fail every
    fault-injection run, whose point is that failed attempts get retried to success."""
    runner = environment.runner
    recovered = result.retries.get("failed_attempts_recovered", 0)
    unrecovered = runner.stats.total.num_failures - recovered
    if unrecovered > 0 or runner.exceptions:
        log.error("%d failed requests were never retried to success, %d exceptions",
                  max(unrecovered, 0), len(runner.exceptions))
        return 1
    return 0
