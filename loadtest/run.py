"""One command: local deployment + distributed headless Locust + verification + report.

    python -m loadtest.run --shards 3 --workers 2 --users 200 --spawn-rate 100 \\
        --run-time 15s --processes 2 --scenario sensor,gateway,dashboard --out loadtest/results/

Starts N redis-server shards and `humtemp serve --workers M` on free loopback ports,
waits for /readyz, runs Locust (`--processes`), writes report.json and report.png
into --out, stops everything it started, and exits non-zero on any request failure
(in a fault run: any not retried to success), Locust error or verification mismatch.

    python -m loadtest.run --shards 3 --workers 2 --users 50 --scenario gateway \
        --run-time 40s --fault-stop 8:4 --fault-oom 20:4

also stops shard 0 (SIGSTOP) 8 s into the run for 4 s, and makes it run out of
memory 20 s in for 4 s: gateways retry every 503 with their Idempotency-Key, and
the run then demands that every acknowledged observation is counted exactly once.
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

from humtemp.extras import require_modules
from humtemp.localredis import LocalRedis
from loadtest import cluster, faults, report
from loadtest.options import KEYED

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
    p.add_argument("--fault-stop", type=faults.window, metavar="START:SECONDS",
                   help="SIGSTOP shard --fault-shard START s after Locust started, SIGCONT it "
                        "SECONDS later (a hung shard)")
    p.add_argument("--fault-oom", type=faults.window, metavar="START:SECONDS",
                   help="make shard --fault-shard refuse writes as out of memory (maxmemory 1, "
                        "noeviction) START s after Locust started, for SECONDS")
    p.add_argument("--fault-shard", type=int, default=0, help="the shard the faults hit")
    p.add_argument("--keys", choices=sorted(KEYED), default="gateway",
                   help="writes sent with an Idempotency-Key and retried (default gateway)")
    p.add_argument("--retries", type=int, default=30,
                   help="attempts per keyed write in all (default 30)")
    p.add_argument("--retry-seconds", type=float, default=60.0,
                   help="no retry of a keyed write starts later than this (default 60)")
    p.add_argument("--blind-retries", action="store_true",
                   help="retry writes without a key too (with --keys none: the negative "
                        "control, whose retries double-count)")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="report.json, report.png, Locust CSV/JSON, logs (default loadtest/results)")
    args = p.parse_args(argv)
    try:
        args.faults = faults.plan(args.fault_stop, args.fault_oom, args.fault_shard)
    except ValueError as exc:
        p.error(str(exc))
    if args.faults and args.host:
        p.error("--fault-stop/--fault-oom need the shards this runner starts (not --host)")
    if args.faults and not 0 <= args.fault_shard < args.shards:
        p.error(f"--fault-shard {args.fault_shard}: there are {args.shards} shards")
    return args


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
           "--ht-mix", mix, "--ht-verify-file", str(out / "verification.json"),
           "--ht-keys", args.keys, "--ht-retries", str(args.retries),
           "--ht-retry-seconds", str(args.retry_seconds)]
    if args.blind_retries:
        cmd += ["--ht-blind-retries", "true"]
    if args.faults:  # failed attempts that a retry stored later do not fail the run
        cmd += ["--ht-recovered-ok", "true"]
    if args.token:
        cmd += ["--ht-token", args.token]
    if args.processes > 0:
        # a port of our own: on Locust's default 5557 the workers of two runs on one
        # machine would join whichever master bound it first
        port = str(cluster.free_port())
        cmd += ["--processes", str(args.processes), "--master-bind-port", port,
                "--master-port", port]
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
    timeline: list[dict[str, Any]] = []
    t0 = time.monotonic()
    injector = threading.Thread(target=faults.inject,
                                args=(args.faults, shards, t0, done, say, timeline))
    if args.faults:
        injector.start()
    try:
        with (out / "locust.log").open("wb") as log:
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                                check=False).returncode
    finally:
        wall = time.monotonic() - t0
        done.set()  # a fault still on is undone now, before the deployment stops
        if injector.is_alive():
            injector.join()
    redis_cpu = [after - before for before, after in
                 zip(redis_before, (s.cpu_seconds() for s in shards), strict=True)]
    return {"locust_exit_code": rc, "wall_s": wall, "redis_cpu_s": redis_cpu,
            "humtemp_cpu_s": cluster.cpu_seconds_tree(dep.server if dep else None) - server_before,
            "command": shown, "faults": timeline}


def retry_outcome(args: argparse.Namespace, failures: int, verification: dict[str, Any] | None,
                  timeline: list[dict[str, Any]]) -> dict[str, Any]:
    """What the retries did, and which failed requests the run forgives.

    Without faults every failed request fails the run. With faults a failed attempt of
    a keyed write that a retry stored later is expected (it is what the faults are
    for); any other failed request, and any write never acknowledged, fails the run.
    If every write scenario of the run sends keys, counts must also equal
    acknowledgements exactly (`exactly_once`)."""
    retries = (verification or {}).get("retries") or {}
    recovered = retries.get("failed_attempts_recovered", 0) if args.faults else 0
    writers = {n for n in args.scenario.split(",") if n in ("sensor", "gateway")}
    return {
        "faults": timeline,
        "retries": retries,
        "failed_attempts_by_code": retries.get("errors", {}),
        "failures_recovered": recovered,
        "failures_unrecovered": failures - recovered,
        "exactly_once": bool(verification and verification.get("exactly_once")),
        "exactly_once_required": bool(args.faults and writers
                                      and writers <= KEYED[args.keys]),
    }


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
        **retry_outcome(args, stats["failures"], verification, run["faults"]),
    }
    rep["ok"] = bool(run["locust_exit_code"] == 0 and stats["requests"] > 0
                     and rep["failures_unrecovered"] == 0 and verification
                     and verification["ok"]
                     and (rep["exactly_once"] or not rep["exactly_once_required"]))
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    history = report.read_history(out / "locust_stats_history.csv")
    target = args.host or f"{args.shards} shards, {args.workers} humtemp workers"
    report.plot(history, out / "report.png",
                f"humtemp {args.scenario}: {args.users} users, {target}")
    return rep


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    require_modules("python -m loadtest.run", "loadtest", "locust", isolated=True)
    require_modules("python -m loadtest.run", "loadtest", "matplotlib")
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
    r = rep["retries"]
    if r:
        say(f"writes: {r['writes']}, retried {r['retried']}, recovered {r['recovered']}, "
            f"never acknowledged {r['given_up']}; failed attempts {r['failed_attempts']} "
            f"({rep['failures_unrecovered']} not forgiven), by code {r['errors']}")
    say(f"exactly once: {'yes' if rep['exactly_once'] else 'no'}"
        f"{' (required)' if rep['exactly_once_required'] else ''}")
    say(f"report: {out / 'report.json'}, plot: {out / 'report.png'}; "
        f"locust log: {out / 'locust.log'}")
    say("OK" if rep["ok"] else "FAILED")
    return 0 if rep["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
