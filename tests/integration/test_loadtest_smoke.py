"""CI smoke of the local load-test runner against the real service.

`python -m loadtest.run` starts real redis-server shards and humtemp, drives it with
distributed Locust and verifies every acknowledged write.  The second test injects real
data loss (FLUSHALL on a shard mid-run) and demands that the runner notices and fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(out: Path, *args: str, timeout: int = 150) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "loadtest.run", "--out", str(out), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          check=False)


def test_runner_smoke_distributed_verified_across_buckets(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--shards", "2", "--workers", "2", "--users", "60",
                "--spawn-rate", "60", "--run-time", "15s", "--processes", "2",
                "--scenario", "sensor,gateway,dashboard", "--sensor-pacing", "0.5",
                "--bucket-duration", "5")
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["ok"] is True
    assert rep["failures"] == 0 and rep["requests"] > 300
    assert rep["locust_exit_code"] == 0
    assert {"POST /observation", "POST /observations [json]", "POST /observations [ndjson]",
            "GET /summary", "GET /summary/lab"} <= set(rep["endpoints"])
    assert rep["p50_ms"] is not None and rep["p95_ms"] >= rep["p50_ms"]
    v = rep["verification"]
    assert v["ok"] and not v["mismatches"] and not v["errors"]
    assert v["acknowledged"] == v["stored"] == rep["observations_acknowledged"] > 1000
    assert len(v["buckets"]) >= 3  # 5 s buckets: the run crossed bucket boundaries
    assert len(rep["redis_cpu_s_per_shard"]) == 2 and sum(rep["redis_cpu_s_per_shard"]) > 0
    png = tmp_path / "report.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "verification: PASSED" in proc.stdout


def test_runner_fails_when_the_service_loses_acknowledged_data(tmp_path: Path) -> None:
    proc = _run(tmp_path, "--shards", "2", "--workers", "1", "--users", "20",
                "--spawn-rate", "20", "--run-time", "6s", "--processes", "2",
                "--scenario", "sensor,gateway", "--sensor-pacing", "0.2",
                "--inject-data-loss", "2", "--token", "s3cret-token")
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-4000:]
    assert "injecting data loss: FLUSHALL on shard 0 -> '+OK" in proc.stdout
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["ok"] is False and rep["failures"] == 0  # every request succeeded (with the
    # bearer token the service was started to require: no 401s) ...
    v = rep["verification"]
    assert not v["ok"] and v["stored"] < v["acknowledged"]  # ... yet data is gone
    assert any(m["problem"] == "count differs" and m["stored"] < m["acknowledged"]
               for m in v["mismatches"])
    assert "s3cret-token" not in (tmp_path / "report.json").read_text() + proc.stdout
    assert "verification: FAILED" in proc.stdout and "off: {'lab': " in proc.stdout
