"""Capacity measurements behind docs/capacity.md (a benchmark, not a test).

    python -m loadtest.capacity --seconds 10 --repeat 3 --out loadtest/results/capacity.json

For each repetition it starts a fresh deployment (1 humtemp worker process, 1 redis
shard by default) and measures, with wrk as the cheap load generator:
  * single: POST /observation req/s, humtemp CPU-s per request, Redis CPU-s per observation;
  * batch:  POST /observations (JSON arrays) observations/s, same CPU figures;
and with Locust (one process, users flat out, no --processes) Locust's own cost:
  * locust-sensor / locust-gateway: req/s and Locust CPU-s per request.
CPU is read from /proc (humtemp.procstat) for humtemp, Locust and Redis, so
the per-unit costs stay meaningful on a machine shared with other work.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from humtemp.extras import require_modules
from loadtest import cluster, report

HERE = Path(__file__).resolve().parent


def parse_wrk(text: str) -> dict[str, Any]:
    """Requests, errors, req/s and latency percentiles from wrk --latency output."""
    def num(pattern: str, default: float = 0.0) -> float:
        m = re.search(pattern, text)
        return float(m.group(1)) if m else default

    lat = {}
    for pct, value, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", text, re.M):
        lat[f"p{pct}_ms"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": int(num(r"(\d+) requests in")),
        "rps": num(r"Requests/sec:\s+([\d.]+)"),
        "non_2xx": int(num(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        **lat,
    }


def run_wrk(url: str, script: str, seconds: int, conns: int, args: list[str]) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-s",
           str(HERE / "wrk" / script), url, "--", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60)
    return {"command": " ".join(cmd), **parse_wrk(out.stdout)}


def _steady_cost(samples: list[tuple[float, float]], history: Path) -> tuple[float, int] | None:
    """(CPU seconds, requests) between the 2nd second and the last history row.

    Excludes Locust's start-up (imports, spawning) that would inflate the per-request cost.
    """
    rows = []
    with contextlib.suppress(OSError), history.open() as f:
        rows = [(float(r["Timestamp"]), int(r["Total Request Count"]))
                for r in csv.DictReader(f) if r["Name"] == "Aggregated"]
    rows = [r for r in rows if r[1] > 0]
    if len(rows) < 3 or len(samples) < 2:
        return None
    (ta, na), (tb, nb) = rows[1], rows[-1]

    def cpu_at(t: float) -> float:
        before = [c for ts, c in samples if ts <= t]
        return before[-1] if before else samples[0][1]

    return cpu_at(tb) - cpu_at(ta), nb - na


def run_locust(url: str, seconds: int, user: str, users: int, batch: int,
               tmp: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
           "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--host", url,
           "--only-summary", "--json-file", str(tmp / "cap"), "--csv", str(tmp / "cap"),
           "--stop-timeout", "5", "--ht-sensor-pacing", "0", "--ht-gateway-pacing", "0",
           "--ht-batch-size", str(batch), "--ht-verify", "false", user]
    (tmp / "cap_stats_history.csv").unlink(missing_ok=True)
    t0 = time.monotonic()
    samples: list[tuple[float, float]] = []  # (unix time, locust CPU seconds)
    with (tmp / "locust.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:  # sample: the process' CPU is gone once it exits
            cpu = cluster.cpu_seconds_tree(proc)
            if cpu:
                samples.append((time.time(), cpu))
            time.sleep(0.1)
    wall = time.monotonic() - t0
    stats = report.summarize_stats(report.load_json(tmp / "cap.json", []))
    steady = _steady_cost(samples, tmp / "cap_stats_history.csv")
    us_per_req = 1e6 * steady[0] / steady[1] if steady and steady[1] else None
    return {"command": " ".join(cmd), "exit_code": proc.returncode, "requests": stats["requests"],
            "failures": stats["failures"], "rps": stats["rps"], "p95_ms": stats["p95_ms"],
            "locust_cpu_s": samples[-1][1] if samples else 0.0, "wall_s": wall,
            "locust_steady_cpu_s_and_requests": steady,
            "locust_cpu_us_per_request": us_per_req,
            "locust_ceiling_rps_per_core": 1e6 / us_per_req if us_per_req else None}


def measure(kind: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """One fresh deployment, one load of `kind`, with CPU accounting around it."""
    with cluster.deployment(args.shards, args.workers, aof=args.aof) as dep:
        shards = [s.cpu_seconds() for s in dep.shards]
        server = cluster.cpu_seconds_tree(dep.server)
        t0 = time.monotonic()
        if kind == "single":
            res = run_wrk(dep.base_url, "observation.lua", args.seconds, args.conns,
                          [str(args.labs), "cap-"])
            obs_per_req = 1
        elif kind == "batch":
            res = run_wrk(dep.base_url, "batch.lua", args.seconds, args.batch_conns,
                          [str(args.labs), str(args.batch), "cap-"])
            obs_per_req = args.batch
        elif kind == "locust-sensor":
            res = run_locust(dep.base_url, args.seconds, "SensorUser", 64, 1, tmp)
            obs_per_req = 1
        else:
            res = run_locust(dep.base_url, args.seconds, "GatewayUser", 16, args.batch, tmp)
            obs_per_req = args.batch
        wall = time.monotonic() - t0
        server_cpu = cluster.cpu_seconds_tree(dep.server) - server
        redis_cpu = [after - before for before, after in
                     zip(shards, (s.cpu_seconds() for s in dep.shards), strict=True)]
    ok_requests = res["requests"] - res.get("non_2xx", 0) - res.get("failures", 0)
    observations = ok_requests * obs_per_req
    return {
        "kind": kind, **res, "observations": observations,
        "observations_per_s": res["rps"] * obs_per_req,
        "humtemp_cpu_s": server_cpu, "humtemp_cpu_share": server_cpu / wall,
        "humtemp_cpu_us_per_request": 1e6 * server_cpu / max(res["requests"], 1),
        "humtemp_cpu_us_per_observation": 1e6 * server_cpu / max(observations, 1),
        "redis_cpu_s": redis_cpu,
        "redis_cpu_us_per_observation": 1e6 * sum(redis_cpu) / max(observations, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.capacity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--shards", type=int, default=1)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--conns", type=int, default=64)
    p.add_argument("--batch-conns", type=int, default=16)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--labs", type=int, default=1000)
    p.add_argument("--aof", action="store_true",
                   help="shards with appendonly yes + appendfsync everysec (as the Helm chart)")
    p.add_argument("--kinds", default="single,batch,locust-sensor,locust-gateway")
    p.add_argument("--out", type=Path, default=HERE / "results" / "capacity.json")
    args = p.parse_args(argv)
    if "locust" in args.kinds:
        require_modules("python -m loadtest.capacity", "loadtest", "locust", isolated=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.parent / "capacity-tmp"
    tmp.mkdir(exist_ok=True)
    runs = []
    for i in range(args.repeat):
        for kind in args.kinds.split(","):
            r = measure(kind, args, tmp)
            runs.append(r)
            print(f"[capacity] run {i + 1} {kind}: {r['rps']:.0f} req/s, "
                  f"{r['observations_per_s']:.0f} obs/s, humtemp CPU {r['humtemp_cpu_share']:.2f},"
                  f" {r['humtemp_cpu_us_per_observation']:.1f} us/obs, redis "
                  f"{r['redis_cpu_us_per_observation']:.2f} us/obs"
                  + (f", locust {r['locust_cpu_us_per_request']:.0f} us/req"
                     if r.get("locust_cpu_us_per_request") else ""), flush=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                    "argv": sys.argv, "runs": runs}, indent=2))
    print(f"[capacity] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
