"""CI smoke of the benchmark suite: `python -m bench --quick` end to end, so it cannot rot.

Real redis-server shards, real humtemp (1 and 2 workers), the bare server and wrk; the run is
short (~20 s) and only sanity is asserted (no throughput targets: CI machines are noisy).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SECTIONS = ("options", "machine", "ingest", "multiworker", "batch", "summary", "reads",
            "targets")


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    out = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(out.glob("bench-*.json"))
    assert len(files) == 1, list(out.iterdir())
    return json.loads(files[0].read_text()), out, proc.stdout


def _check_run(row: dict) -> None:
    assert row["rps"] > 0
    assert row["requests"] > 0
    assert row["non_2xx"] == 0
    assert row["socket_errors"] == 0
    assert 0 < row["p50_ms"] <= row["p99_ms"]


def test_every_section_present(quick_result: tuple[dict, Path, str]) -> None:
    result, _, _ = quick_result
    for section in SECTIONS:
        assert section in result, section
    assert result["quick"] is True
    assert result["command"].startswith("python -m bench --quick")


def test_ingest_numbers_are_sane(quick_result: tuple[dict, Path, str]) -> None:
    result, _, stdout = quick_result
    level = result["ingest"]["by_connections"]["64"]
    for name in ("humtemp", "bare"):
        _check_run(level[name])
        assert level[name]["cpu_us_per_request"][name] > 0
    assert level["ratio_rps"] > 0
    assert level["ratio_rps_paired"] == pytest.approx(
        sorted(level["ratio_rps_rounds"])[len(level["ratio_rps_rounds"]) // 2], abs=0.001)
    assert level["humtemp"]["redis_cpu_us_per_obs"] > 0
    assert level["humtemp"]["obs_per_flush"] >= 1, "flush sizes read from humtemp's /metrics"
    assert level["bare"]["obs_per_flush"] is None
    assert "humtemp/bare" in stdout  # progress lines were printed


def test_multiworker_measures_each_process(quick_result: tuple[dict, Path, str]) -> None:
    multi = quick_result[0]["multiworker"]
    _check_run(multi["workers_1"])
    _check_run(multi["workers_2"])
    assert len(multi["cpu_seconds_per_process"]) >= 2
    assert sum(multi["cpu_share_per_process"].values()) == pytest.approx(1, abs=0.01)
    assert multi["connections_per_pid"], "ss saw no connections"


def test_batch_and_summary(quick_result: tuple[dict, Path, str]) -> None:
    result = quick_result[0]
    batch = result["batch"]
    _check_run(batch["humtemp"])
    assert batch["humtemp"]["obs_per_s"] == pytest.approx(batch["humtemp"]["rps"] * 100, rel=0.01)
    summary = result["summary"]["by_labs"]["1000"]
    assert summary["requests"] > 0 and summary["non_2xx"] == 0
    assert summary["p50_ms"] > 0
    assert len(summary["keys_per_shard"]) == 3
    assert all(keys > 0 for keys in summary["keys_per_shard"]), "labs not spread over shards"


def test_targets_and_plot(quick_result: tuple[dict, Path, str]) -> None:
    result, out, _ = quick_result
    targets = result["targets"]
    assert len(targets) == 7
    for target in targets:
        assert target["pass"] in (True, False, None)
        assert target["target"]
    errors = next(t for t in targets if t["name"].startswith("non-2xx"))
    assert errors["pass"] is True
    png = Path(result["plot"])
    assert png.parent == out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_redis_cost_benchmark_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.redis_cost", "--calls", "50", "--labs-per-call", "1,4"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0] for line in table[1:]] == [
        "| PING", "| EVALSHA 'return 1'", "| write.lua, 1 labs", "| write.lua, 4 labs"]
    per_call = [float(line.split(" | ")[1].split()[0]) for line in table[1:]]
    assert all(cost > 0 for cost in per_call), table


def _check_reads(reads: dict, labs: int) -> None:
    row = reads["by_labs"][str(labs)]
    assert row["writes"] > 0 and row["writes_503"] == 0 and row["readyz_failures"] == 0
    assert row["reads"] > 0 and row["fanouts"] >= 1
    assert row["response_bytes"] > labs * 40  # ~60 bytes per lab in /summary
    assert row["read_commands"] > 0 and row["redis_ms_per_fanout"] > 0
    assert row["humtemp_peak_rss_mib"] > 0


def test_reads_under_ingest_in_the_full_run(quick_result: tuple[dict, Path, str]) -> None:
    _check_reads(quick_result[0]["reads"], 1000)


def test_reads_only_runs_just_that_scenario(tmp_path: Path) -> None:
    """`python -m bench --reads-only`: the scenario alone, written to reads-*.json."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--reads-only", "--quick", "--reads-labs", "3000",
         "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (path,) = tmp_path.glob("reads-*.json")
    result = json.loads(path.read_text())
    assert "ingest" not in result
    _check_reads(result["reads"], 3000)
    assert "reads 3000 labs: writes p50" in proc.stdout
