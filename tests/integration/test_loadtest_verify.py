"""The verifier and the distributed ledger exchange, proven against a fake service.

These run without humtemp: they check that verification passes on exact data, fails
(non-zero exit, labs named) when acknowledged data is lost, bounds uncertain writes,
and that Locust's master really gathers every worker's ledger.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from loadtest.cluster import free_port
from loadtest.fake_service import FakeService, serve
from loadtest.ledger import Ledger
from loadtest.options import prefix_for_test
from loadtest.report import percentile, read_history
from loadtest.verify import HttpSummaryClient, verify
from loadtest.workload import BucketClock, observation

ROOT = Path(__file__).resolve().parents[2]


def _write(fake: FakeService, ledger: Ledger, n: int, labs: int, prefix: str) -> None:
    rng = random.Random(1)
    clock = BucketClock(0, fake.duration)
    for i in range(n):
        obs = observation(f"{prefix}{i % labs:03d}", rng, jitter=0)
        keys = ledger.begin([obs], clock.bucket_of)
        fake.store(obs)
        ledger.settle(keys, [obs], "stored")


def test_verify_passes_on_exact_data_and_names_labs_that_lost_data() -> None:
    fake = FakeService()
    with serve(fake) as url:
        ledger = Ledger()
        _write(fake, ledger, 300, 10, "t1-")
        ok = verify(ledger, HttpSummaryClient(url), "t1-")
        assert ok.ok, ok.lines()
        assert (ok.labs_checked, ok.acknowledged, ok.stored) == (10, 300, 300)
        assert ok.exactly_once

        fake.data[("t1-003", fake.current(0))][0] -= 1  # the service lost one observation
        bad = verify(Ledger.from_wire(ledger.to_wire()), HttpSummaryClient(url), "t1-")
        assert not bad.ok and not bad.exactly_once
        off = [(m["lab"], m["source"]) for m in bad.mismatches if m["problem"] == "count differs"]
        assert sorted(off) == [("t1-003", "/summary/detail"), ("t1-003", "/summary/lab")]


def test_verify_flags_foreign_labs_and_bounds_uncertain_writes() -> None:
    fake = FakeService()
    with serve(fake) as url:
        ledger = Ledger()
        _write(fake, ledger, 20, 2, "t2-")
        obs = observation("t2-000", random.Random(2), jitter=0)
        keys = ledger.begin([obs], BucketClock(0, fake.duration).bucket_of)
        fake.store(obs)  # applied, but the client never saw the answer
        ledger.settle(keys, [obs], "unknown")
        bounded = verify(ledger, HttpSummaryClient(url), "t2-")
        assert bounded.ok and bounded.uncertain == 1
        assert not bounded.exactly_once  # within bounds, but not proven exactly once

        fake.store({**obs, "lab_id": "t2-999"})  # a lab this run never wrote
        res = verify(ledger, HttpSummaryClient(url), "t2-")
        assert not res.ok
        assert {(m["lab"], m["source"]) for m in res.mismatches} == {
            ("t2-999", "/summary/detail"), ("t2-999", "/summary")}


def test_verify_fails_when_nothing_to_check_or_service_unreachable() -> None:
    assert not verify(Ledger(), HttpSummaryClient("http://127.0.0.1:9"), "x-").ok
    ledger = Ledger()
    keys = ledger.begin([{"lab_id": "x-1", "timestamp": 5}], lambda ts: 0)
    ledger.settle(keys, [{"lab_id": "x-1", "timestamp": 5, "temp": 1.0, "humidity": 2.0}],
                  "stored")
    res = verify(ledger, HttpSummaryClient("http://127.0.0.1:9", timeout=1), "x-")
    assert not res.ok and res.errors


def test_ledger_wire_round_trip_merge_and_percentiles() -> None:
    a, b = Ledger(), Ledger()
    for ledger, temp in ((a, 1.25), (b, 2.5)):
        obs = [{"lab_id": "l", "timestamp": 10, "temp": temp, "humidity": 50.0}]
        ledger.settle(ledger.begin(obs, lambda ts: 0), obs, "stored")
    b.begin([{"lab_id": "l", "timestamp": 10}], lambda ts: 0)  # still in flight
    a.merge(Ledger.from_wire(json.loads(json.dumps(b.to_wire()))))
    a.close()
    t = a.tallies[("l", 0)]
    assert (t.count, t.sum_temp, t.sum_humidity, t.uncertain) == (2, 3.75, 100.0, 1)
    assert percentile({"1": 50, "2": 45, "30": 5}, 0.95) == 2
    assert percentile({"1": 50, "2": 44, "30": 6}, 0.95) == 30


def _locust(url: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    port = free_port()  # not Locust's default 5557: another run may hold it
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest/locustfile.py"),
           "--headless", "--processes", "2", "-u", "20", "-r", "20", "-t", "4s",
           "--host", url, "--stop-timeout", "5", "--only-summary",
           "--ht-sensor-pacing", "0.2", "--ht-gateway-pacing", "0.2",
           "--ht-dashboard-pacing", "0.5", "--ht-labs", "40", "--ht-batch-size", "10",
           "--ht-verify-file", str(out), "--master-bind-port", str(port),
           "--master-port", str(port), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def test_distributed_run_gathers_all_workers_and_crosses_buckets(tmp_path: Path) -> None:
    fake = FakeService(duration=2)  # a 4 s run crosses at least one bucket boundary
    with serve(fake) as url:
        proc = _locust(url, tmp_path / "v.json")
    result = json.loads((tmp_path / "v.json").read_text())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert result["ok"] and not result["mismatches"]
    assert result["acknowledged"] == fake.seen > 100
    assert len(result["buckets"]) >= 2


def test_distributed_run_exits_nonzero_when_service_loses_data(tmp_path: Path) -> None:
    fake = FakeService(lose_every=25)
    with serve(fake) as url:
        proc = _locust(url, tmp_path / "v.json", "SensorUser")
    result = json.loads((tmp_path / "v.json").read_text())
    assert proc.returncode == 1
    assert not result["ok"] and result["mismatches"]
    assert "verification FAILED" in proc.stderr
    assert result["stored"] == result["acknowledged"] - fake.seen // 25


def test_history_rate_is_recomputed_from_total_counts(tmp_path: Path) -> None:
    lines = ["Timestamp,User Count,Type,Name,Requests/s,95%,Total Request Count"]
    for t, count in enumerate((0, 0, 0, 300, 300, 300, 900)):
        lines.append(f"{100 + t},10,,Aggregated,0,{'N/A' if not count else 12},{count}")
        lines.append(f"{100 + t},10,POST,/observation,0,12,{count}")
    path = tmp_path / "h.csv"
    path.write_text("\n".join(lines) + "\n")
    assert [(t, r, p) for t, r, p in read_history(path)] == [
        (100.0, 0.0, None), (101.0, 0.0, None), (102.0, 0.0, None), (103.0, 100.0, 12.0),
        (104.0, 100.0, 12.0), (105.0, 100.0, 12.0), (106.0, 200.0, 12.0)]


# Two tests in one Locust process (the web UI's "New test"), driven through Locust's
# library API in a subprocess (importing locust here would gevent-patch pytest).
TWO_TESTS = """
import json
import sys

import gevent
from locust import events
from locust.argument_parser import parse_options
from locust.env import Environment

sys.path.insert(0, sys.argv[1])
from loadtest import locustfile as lf  # noqa: E402

url, out = sys.argv[2], sys.argv[3]
opts = parse_options(args=["-f", "x", "--ht-sensor-pacing", "0.1", "--ht-prefix", "two-",
                           "--ht-verify-file", out])
env = Environment(user_classes=[lf.SensorUser], events=events, host=url, parsed_options=opts)
runner = env.create_local_runner()
events.init.fire(environment=env, runner=runner, web_ui=None)
results = []
for _ in range(2):
    runner.start(4, 4)
    gevent.sleep(1.5)
    runner.stop()
    results.append(json.load(open(out)))
print(json.dumps([[r["prefix"], r["ok"], r["acknowledged"]] for r in results]))
sys.exit(env.process_exit_code or 0)
"""


def test_each_test_of_one_locust_process_gets_its_own_prefix_and_verifies(
        tmp_path: Path) -> None:
    assert [prefix_for_test("p-", n) for n in (1, 2, 3)] == ["p-", "p-r2-", "p-r3-"]
    script = tmp_path / "two_tests.py"
    script.write_text(TWO_TESTS)
    with serve(FakeService()) as url:
        proc = subprocess.run([sys.executable, str(script), str(ROOT), url,
                               str(tmp_path / "v.json")],
                              capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (p1, ok1, n1), (p2, ok2, n2) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (p1, p2, ok1, ok2) == ("two-", "two-r2-", True, True) and n1 > 0 and n2 > 0
