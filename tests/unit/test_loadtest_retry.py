"""The load generator's retry rules, its bookkeeping, and the fault plan (pure logic).

A keyed write is retried on 5xx / no answer, after Retry-After, within its budget; it
reaches the ledger once, with its final outcome; a run under faults forgives exactly
the failed attempts that a retry later stored.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from types import SimpleNamespace

import pytest

from loadtest.faults import Fault, inject, plan, window
from loadtest.ledger import Ledger
from loadtest.retry import (
    NO_RETRY,
    REJECTED,
    STORED,
    UNKNOWN,
    Attempt,
    Attempts,
    RetryPolicy,
    RetryStats,
)
from loadtest.run import parse_args, retry_outcome

FULL = Attempt(UNKNOWN, 503, "storage_full", "1")
HUNG = Attempt(UNKNOWN, 503, "outcome_unknown", "1")
NO_ANSWER = Attempt(UNKNOWN, 0)
OK = Attempt(STORED, 200)
BAD = Attempt(REJECTED, 422, "invalid_observation")


def test_retry_waits_as_told_backs_off_without_being_told_and_stops_in_budget() -> None:
    policy = RetryPolicy(attempts=4, seconds=10.0)
    assert policy.delay(FULL, made=1, elapsed=0.0) == 1.0
    assert policy.delay(Attempt(UNKNOWN, 503, "x", "3600"), 1, 0.0) == 10.0  # capped
    assert [policy.delay(NO_ANSWER, n, 0.0) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]
    assert policy.delay(FULL, made=4, elapsed=0.0) is None  # attempts used up
    assert policy.delay(FULL, made=1, elapsed=9.5) is None  # would start after 10 s
    assert policy.delay(OK, 1, 0.0) is None and policy.delay(BAD, 1, 0.0) is None
    assert NO_RETRY.delay(FULL, 1, 0.0) is None  # writes without a key are never retried


def test_a_write_is_stored_once_any_attempt_is_and_unknown_after_any_doubt() -> None:
    def outcome(*attempts: Attempt, in_flight: bool = False) -> str:
        write = Attempts()
        for a in attempts:
            write.start()
            write.record(a)
        if in_flight:
            write.start()
        return write.outcome

    assert outcome(HUNG, FULL, OK) == STORED
    assert outcome(BAD) == REJECTED
    assert outcome(HUNG, BAD) == UNKNOWN  # the first attempt may have stored a part
    assert outcome(FULL, HUNG) == UNKNOWN  # retries ran out
    assert outcome(FULL, in_flight=True) == UNKNOWN  # the run stopped mid-retry
    assert outcome() == UNKNOWN


def test_retry_stats_count_writes_and_attempts_and_survive_the_wire() -> None:
    a, b = RetryStats(), RetryStats()
    for stats, attempts in ((a, (HUNG, NO_ANSWER, OK)), (a, (OK,)), (b, (FULL, FULL))):
        write = Attempts()
        for attempt in attempts:
            write.start()
            write.record(attempt)
        stats.add(write)
    a.merge(RetryStats.from_wire(json.loads(json.dumps(b.to_wire()))))
    assert a.to_wire() == {
        "writes": 3, "retried": 2, "recovered": 1, "given_up": 1, "failed_attempts": 4,
        "failed_attempts_recovered": 2,
        "errors": {"503 outcome_unknown": 1, "503 storage_full": 2, "connection_error": 1}}

    ledger = Ledger(retries=a)
    assert Ledger.from_wire(ledger.to_wire()).retries.to_wire() == a.to_wire()
    merged = Ledger()
    merged.merge(ledger)
    assert merged.retries.counts["writes"] == 3


def test_fault_windows_parse_and_overlapping_faults_are_refused() -> None:
    assert window("3:2") == (3.0, 2.0) and window("0:0.5") == (0.0, 0.5)
    for bad in ("3", "3:0", "-1:2", "a:b", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            window(bad)
    assert plan((9.0, 2.0), (3.0, 2.0), 1) == [Fault("oom", 3.0, 2.0, 1),
                                                Fault("stop", 9.0, 2.0, 1)]
    assert plan(None, None, 0) == []
    with pytest.raises(ValueError, match="overlaps"):
        plan((3.0, 2.0), (4.0, 2.0), 0)


class FakeShard:
    """Records the signals and Redis commands a fault sends (no process, no Redis)."""

    port = 1

    def __init__(self) -> None:
        self.calls: list[object] = []
        self.proc = SimpleNamespace(send_signal=self.calls.append)

    def client(self) -> SimpleNamespace:
        return SimpleNamespace(
            config_set=lambda name, value: self.calls.append(f"{name} {value}") or True)


def test_faults_are_undone_in_time_and_when_the_run_ends_first() -> None:
    shard, said, timeline = FakeShard(), [], []
    faults = [Fault("stop", 0.0, 0.05, 0), Fault("oom", 0.1, 0.05, 0)]
    inject(faults, [shard], time.monotonic(), threading.Event(), said.append, timeline)
    assert shard.calls == [signal.SIGSTOP, signal.SIGCONT, "maxmemory-policy noeviction",
                           "maxmemory 1", "maxmemory 0"]
    assert [e["kind"] for e in timeline] == ["stop", "oom"] and len(said) == 4
    assert all(0.04 <= e["ended_s"] - e["started_s"] < 1 for e in timeline)

    done, shard, timeline = threading.Event(), FakeShard(), []
    threading.Timer(0.05, done.set).start()
    started = time.monotonic()
    inject([Fault("stop", 0.0, 30.0, 0), Fault("oom", 40.0, 1.0, 0)], [shard], started, done,
           said.append, timeline)
    assert time.monotonic() - started < 5  # the run's end cut the 30 s fault short
    assert shard.calls == [signal.SIGSTOP, signal.SIGCONT]
    assert "skipped" in timeline[1] and "started_s" not in timeline[1]


def test_runner_forgives_only_recovered_attempts_and_only_in_fault_runs() -> None:
    verification = {"exactly_once": True,
                    "retries": {"failed_attempts_recovered": 5, "errors": {"503 x": 5}}}
    calm = parse_args(["--scenario", "gateway"])
    assert retry_outcome(calm, 5, verification, [])["failures_unrecovered"] == 5
    faulty = parse_args(["--scenario", "gateway", "--fault-stop", "3:2"])
    got = retry_outcome(faulty, 7, verification, [])
    assert (got["failures_recovered"], got["failures_unrecovered"]) == (5, 2)
    assert got["exactly_once_required"] and got["failed_attempts_by_code"] == {"503 x": 5}
    mixed = parse_args(["--scenario", "sensor,gateway", "--fault-oom", "3:2"])
    assert not retry_outcome(mixed, 0, verification, [])["exactly_once_required"]
    keyed = parse_args(["--scenario", "sensor,gateway", "--fault-oom", "3:2", "--keys", "all"])
    assert retry_outcome(keyed, 0, verification, [])["exactly_once_required"]
    with pytest.raises(SystemExit):
        parse_args(["--fault-stop", "3:2", "--host", "http://127.0.0.1:1"])
