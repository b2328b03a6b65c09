"""Issue 12's proof under load: retried keyed writes count exactly once while shards fail.

`python -m loadtest.run` starts real redis-server shards and humtemp, drives keyed
gateway batches with distributed Locust, and meanwhile hangs shard 0 (SIGSTOP) and
then makes it refuse writes as out of memory.  Every failed attempt must be retried
with its Idempotency-Key until stored, and the stored counts must then equal the
acknowledgements exactly: nothing lost, nothing counted twice, nothing left uncertain.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.test_loadtest_smoke import _run


def test_keyed_retries_through_a_hung_and_a_full_shard_count_exactly_once(
        tmp_path: Path) -> None:
    proc = _run(tmp_path, "--shards", "3", "--workers", "1", "--users", "10",
                "--spawn-rate", "10", "--run-time", "16s", "--processes", "2",
                "--scenario", "gateway", "--gateway-pacing", "0.3", "--batch-size", "20",
                "--labs", "100", "--fault-stop", "3:2", "--fault-oom", "9:2")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    for line in ("stopped (SIGSTOP) for 2 s", "continued (SIGCONT) after 2.0 s",
                 "out of memory (maxmemory-policy noeviction, maxmemory 1)",
                 "has memory again (maxmemory 0)", "exactly once: yes (required)"):
        assert line in proc.stdout, log[-4000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert [(f["kind"], f["shard"]) for f in rep["faults"]] == [("stop", 0), ("oom", 0)]
    assert all(f["ended_s"] - f["started_s"] >= 1.9 for f in rep["faults"])

    # the faults bit: each one made the service answer 503 with its own code ...
    by_code = rep["failed_attempts_by_code"]
    assert by_code.get("503 storage_full", 0) > 0, by_code
    assert by_code.get("503 outcome_unknown", 0) + by_code.get("503 shard_unavailable", 0) > 0
    assert set(by_code) <= {"503 storage_full", "503 outcome_unknown",
                            "503 shard_unavailable"}, by_code
    # ... every failed attempt was a sample Locust counted, and was retried to success
    retries = rep["retries"]
    assert rep["failures"] == retries["failed_attempts"] == rep["failures_recovered"] > 0
    assert rep["failures_unrecovered"] == 0 and rep["locust_exit_code"] == 0
    assert retries["given_up"] == 0 and retries["recovered"] == retries["retried"] > 0

    # and the service counted every acknowledged observation exactly once
    v = rep["verification"]
    assert v["ok"] and not v["mismatches"] and not v["errors"]
    assert v["uncertain"] == 0
    assert v["stored"] == v["acknowledged"] == 20 * retries["writes"] > 2000
    assert rep["exactly_once"] is True and rep["ok"] is True
