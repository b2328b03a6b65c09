"""One command: local deployment + distributed headless Locust + verification + report.

    python -m loadtest.run --shards 3 --workers 2 --users 200 --spawn-rate 100 \\
        --run-time 15s --processes 2 --scenario sensor,gateway,dashboard --out loadtest/results/

Starts N redis-server shards and `humtemp serve --workers M` on free loopback ports,
waits for /readyz, runs Locust (`--processes`), writes report.json and report.png
into --out, stops everything it started, and exits non-zero on any request failure,
Locust error or verification mismatch.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from humtemp.localredis import LocalRedis
from loadtest import cluster, report

HERE = Path(__file__).resolve().parent
CLASSES = {"sensor": "SensorUser", "gateway": "GatewayUser", "dashboard": "DashboardUser"}


def say(msg: str) -> None:
    print(f"[loadtest] {time.strftime('%H:%M:%S')} {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=2, help="redis-server shards to start")
    p.add_argument("--workers", type=int, default=1, help="humtemp worker processes")
    p.add_argument("--host", default="", help="test this running service instead of starting one")
    p.add_argument("--users", type=int, default=50, help="Locust users in all (default 50)")
    p.add_argument("--spawn-rate", type=float, default=50, help="users started per second")
    p.add_argument("--run-time", default="15s", help="Locust --run-time (default 15s)")
    p.add_argument("--processes", type=int, default=2, help="Locust worker processes (0 = one)")
    p.add_argument("--scenario", default="sensor,gateway,dashboard",
                   help="comma list of sensor, gateway, dashboard")
    p.add_argument("--mix", default="", help="class weights, e.g. sensor=8,gateway=1,dashboard=1")
    p.add_argument("--labs", type=int, default=500, help="lab pool size (default 500)")
    p.add_argument("--batch-size", type=int, default=50, help="observations per gateway batch")
    p.add_argument("--sensor-pacing", type=float, default=1.0,
                   help="s between a sensor's posts (default 1; 30 is realistic); 0 = flat out")
    p.add_argument("--gateway-pacing", type=float, default=1.0,
                   help="s between batches; 0 = flat out")
    p.add_argument("--dashboard-pacing", type=float, default=2.0, help="s between reads")
    p.add_argument("--bucket-duration", type=int, default=0,
                   help="service bucket length in s (0 = its default); short buckets make the run "
                        "cross bucket boundaries, which verification must handle")
    p.add_argument("--token", default="",
                   help="bearer token: the started service requires it for writes and reads "
                        "(HUMTEMP_INGEST_TOKENS/READ_TOKENS), Locust sends it (--ht-token)")
    p.add_argument("--aof", action="store_true",
                   help="shards with appendonly yes + appendfsync everysec (as the Helm chart)")
    p.add_argument("--stop-timeout", default="10s", help="let in-flight requests finish at stop")
    p.add_argument("--inject-data-loss", type=float, default=0.0, metavar="SECONDS",
                   help="FLUSHALL shard 0 this many seconds after data first reached it "
                        "(proves verification can fail)")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="report.json, report.png, Locust CSV/JSON, logs (default loadtest/results)")
    return p.parse_args(argv)


def locust_command(args: argparse.Namespace, host: str, out: Path) -> list[str]:
    names = [n.strip() for n in args.scenario.split(",") if n.strip()]
    unknown = [n for n in names if n not in CLASSES]
    if unknown or not names:
        raise SystemExit(f"--scenario: unknown {unknown or 'empty'}; choose from {list(CLASSES)}")
    mix = args.mix or ",".join(f"{n}={w}" for n, w in
                               (("sensor", 8), ("gateway", 1), ("dashboard", 1)) if n in names)
    cmd = [sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless",
           "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.run_time,
           "--host", host, "--stop-timeout", args.stop_timeout, "--only-summary",
           "--json-file", str(out / "stats"), "--csv", str(out / "locust"), "--csv-full-history",
           "--ht-labs", str(args.labs), "--ht-batch-size", str(args.batch_size),
           "--ht-sensor-pacing", str(args.sensor_pacing),
           "--ht-gateway-pacing", str(args.gateway_pacing),
           "--ht-dashboard-pacing", str(args.dashboard_pacing),
           "--ht-mix", mix, "--ht-verify-file", str(out / "verification.json")]
    if args.token:
        cmd += ["--ht-token", args.token]
    if args.processes > 0:
        cmd += ["--processes", str(args.processes)]
    return cmd + [CLASSES[n] for n in names]


def _lose_data(shard: LocalRedis, after: float, done: threading.Event) -> None:
    """FLUSHALL `shard` `after` seconds past its first stored key (so loss is certain)."""
    client = shard.client()
    while not done.is_set() and client.dbsize() == 0:
        time.sleep(0.1)
    if not done.wait(after):
        reply = "+OK" if client.flushall() else "-ERR"
        say(f"injecting data loss: FLUSHALL on shard 0 -> {reply!r}")


def run_locust(args: argparse.Namespace, dep: cluster.Deployment | None, host: str,
               out: Path) -> dict[str, Any]:
    cmd = locust_command(args, host, out)
    shown = ["***" if args.token and part == args.token else part for part in cmd]
    say("locust: " + " ".join(shown))
    shards = dep.shards if dep else []
    redis_before = [s.cpu_seconds() for s in shards]
    server_before = cluster.cpu_seconds_tree(dep.server if dep else None)
    done = threading.Event()
    if args.inject_data_loss and shards:
        threading.Thread(target=_lose_data, args=(shards[0], args.inject_data_loss, done),
                         daemon=True).start()
    t0 = time.monotonic()
    with (out / "locust.log").open("wb") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    wall = time.monotonic() - t0
    done.set()
    redis_cpu = [after - before for before, after in
                 zip(redis_before, (s.cpu_seconds() for s in shards), strict=True)]
    return {"locust_exit_code": rc, "wall_s": wall, "redis_cpu_s": redis_cpu,
            "humtemp_cpu_s": cluster.cpu_seconds_tree(dep.server if dep else None) - server_before,
            "command": shown}


def build_report(args: argparse.Namespace, run: dict[str, Any], out: Path) -> dict[str, Any]:
    stats = report.summarize_stats(report.load_json(out / "stats.json", []))
    verification = report.load_json(out / "verification.json", None)
    acked = verification["acknowledged"] if verification else 0
    redis_total = sum(run["redis_cpu_s"])
    rep = {
        **stats,
        "observations_acknowledged": acked,
        "observations_per_s": acked / stats["duration_s"] if stats["duration_s"] else 0.0,
        "verification": verification,
        "locust_exit_code": run["locust_exit_code"],
        "redis_cpu_s_per_shard": run["redis_cpu_s"],
        "redis_cpu_us_per_observation": 1e6 * redis_total / acked if acked else None,
        "humtemp_cpu_s": run["humtemp_cpu_s"],
        "humtemp_cpu_us_per_request": (1e6 * run["humtemp_cpu_s"] / stats["requests"]
                                       if stats["requests"] else None),
        "config": {k: str(v) for k, v in vars(args).items() if k != "token"},
        "locust_command": run["command"],
    }
    rep["ok"] = bool(run["locust_exit_code"] == 0 and stats["requests"] > 0
                     and stats["failures"] == 0 and verification and verification["ok"])
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    history = report.read_history(out / "locust_stats_history.csv")
    target = args.host or f"{args.shards} shards, {args.workers} humtemp workers"
    report.plot(history, out / "report.png",
                f"humtemp {args.scenario}: {args.users} users, {target}")
    return rep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("stats.json", "verification.json", "report.json", "report.png"):
        (out / stale).unlink(missing_ok=True)
    env: dict[str, str] = {}
    if args.bucket_duration:
        # keep every bucket of the run readable until verification is done
        env = {"HUMTEMP_BUCKET_DURATION": str(args.bucket_duration),
               "HUMTEMP_BUCKET_RETENTION": str(max(2, 3600 // args.bucket_duration))}
    if args.token:
        env |= {"HUMTEMP_INGEST_TOKENS": args.token, "HUMTEMP_READ_TOKENS": args.token}
    if args.host:
        say(f"target: {args.host} (not starting a deployment)")
        run = run_locust(args, None, args.host, out)
    else:
        say(f"starting {args.shards} redis shards and humtemp with {args.workers} workers")
        with cluster.deployment(args.shards, args.workers, env, keep=out / "logs",
                                aof=args.aof) as dep:
            say(f"humtemp ready at {dep.base_url}; shards on ports "
                f"{[s.port for s in dep.shards]}")
            run = run_locust(args, dep, dep.base_url, out)
            say("stopping the deployment")
    rep = build_report(args, run, out)
    v = rep["verification"] or {}
    say(f"{rep['requests']} requests, {rep['failures']} failures, {rep['rps']:.0f} req/s, "
        f"p50 {rep['p50_ms']} ms, p95 {rep['p95_ms']} ms, "
        f"{rep['observations_acknowledged']} observations acknowledged")
    say(f"verification: {'PASSED' if v.get('ok') else 'FAILED'}"
        f" ({len(v.get('mismatches', []))} mismatches, errors: {v.get('errors', 'no result')})")
    for m in v.get("mismatches", [])[:10]:
        say(f"  off: {m}")
    say(f"report: {out / 'report.json'}, plot: {out / 'report.png'}; "
        f"locust log: {out / 'locust.log'}")
    say("OK" if rep["ok"] else "FAILED")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
