"""The benchmark phases. Each returns a plain dict that goes into the JSON result as is.

Same-run comparisons only: the machine is shared and noisy, so every number that is judged
is a ratio against a baseline measured in the same run, interleaved A B A B.
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.procs import Service
from bench.shards import total_cpu
from bench.targets import connections_per_pid, flush_totals
from bench.wrk import WrkResult, run_wrk
from humtemp.localredis import LocalRedis


@dataclass
class Options:
    """Everything a run depends on; recorded in the result file."""

    connections: list[int] = field(default_factory=lambda: [16, 64, 128])
    main_connections: int = 64
    duration: float = 5.0
    warmup: float = 1.0
    rounds: int = 3
    labs: int = 1000
    batch_size: int = 100
    batch_connections: int = 64
    summary_labs: list[int] = field(default_factory=lambda: [1000, 10_000, 100_000])
    summary_duration: float = 5.0
    reads_labs: list[int] = field(default_factory=lambda: [100_000, 1_000_000])
    readers: int = 8
    reads_duration: float = 15.0
    bucket_duration: int = 86400
    workers: int = 2
    aof: bool = True


def log(message: str) -> None:
    """Progress line: long runs must show they are alive."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else 0.0


def aggregate(runs: list[WrkResult], per_request: int = 1) -> dict:
    """Median of the rounds for throughput and latency; CPU summed per role over the rounds."""
    requests = sum(run.requests for run in runs)
    cpu: dict[str, float] = {}
    for run in runs:
        for key, seconds in run.cpu_s.items():
            role = key.split(":")[0]
            cpu[role] = cpu.get(role, 0.0) + seconds
    wall = sum(run.duration_s for run in runs)
    return {
        "rounds": len(runs),
        "requests": requests,
        "rps": _median([run.rps for run in runs]),
        "rps_rounds": [run.rps for run in runs],
        "p50_ms": _median([run.p50_ms for run in runs]),
        "p99_ms": _median([run.p99_ms for run in runs]),
        "p99_ms_rounds": [run.p99_ms for run in runs],
        "non_2xx": sum(run.non_2xx for run in runs),
        "socket_errors": sum(run.socket_errors for run in runs),
        "cpu_percent": {role: round(100 * s / wall, 1) for role, s in cpu.items()} if wall else {},
        "cpu_us_per_request": {role: round(1e6 * s / requests, 1) for role, s in cpu.items()}
        if requests
        else {},
        "obs_per_flush": _median(
            [run.extra["obs_per_flush"] for run in runs if "obs_per_flush" in run.extra]
        ) or None,
        "redis_cpu_us_per_obs": round(
            1e6 * sum(run.redis_cpu_s for run in runs) / (requests * per_request), 3
        )
        if requests
        else None,
    }


Target = tuple[str, Service]


def interleave(
    targets: list[Target],
    path: str,
    script: str,
    script_args: list[str],
    connections: int,
    opts: Options,
    shards: list[LocalRedis],
    midway: dict[str, Callable[[], None]] | None = None,
) -> dict[str, list[WrkResult]]:
    """Run wrk on each target in turn, A B A B ... for opts.rounds rounds."""
    runs: dict[str, list[WrkResult]] = {name: [] for name, _ in targets}
    watch_redis = [shard.pid for shard in shards]
    if opts.warmup > 0:
        for name, service in targets:
            run_wrk(name, service.url + path, script, script_args, connections, opts.warmup, {})
    for round_no in range(1, opts.rounds + 1):
        for name, service in targets:
            flushed_before = flush_totals(service)
            result = run_wrk(
                name,
                service.url + path,
                script,
                script_args,
                connections,
                opts.duration,
                watch={name: service.pids(), "redis": watch_redis},
                redis_cpu=lambda: total_cpu(shards),
                midway=(midway or {}).get(name),
            )
            flushed_after = flush_totals(service)
            if flushed_before and flushed_after and flushed_after[1] > flushed_before[1]:
                # How many observations a group commit carried: what amortises Redis's
                # per-call cost (docs/benchmarks.md).
                result.extra["obs_per_flush"] = round(
                    (flushed_after[0] - flushed_before[0])
                    / (flushed_after[1] - flushed_before[1]), 1)
            runs[name].append(result)
            log(
                f"{script} c{connections} round {round_no}/{opts.rounds} {name}: "
                f"{result.rps:,.0f} req/s p50 {result.p50_ms:.2f} ms p99 {result.p99_ms:.2f} ms"
                f" non-2xx {result.non_2xx} errors {result.socket_errors}"
            )
    return runs


def lua_args(opts: Options) -> list[str]:
    return [str(opts.bucket_duration), "0", str(opts.labs), str(opts.batch_size)]


def ingest_phase(humtemp: Service, bare: Service, opts: Options, shards: list[LocalRedis]) -> dict:
    """POST /observation, humtemp vs bare, at every connection count."""
    targets = [("humtemp", humtemp), ("bare", bare)]
    by_conn = {}
    raw = []
    for conns in opts.connections:
        runs = interleave(
            targets, "/observation", "observation.lua", lua_args(opts), conns, opts, shards
        )
        hum, ref = aggregate(runs["humtemp"]), aggregate(runs["bare"])
        by_conn[str(conns)] = {
            "humtemp": hum,
            "bare": ref,
            "ratio_rps": round(hum["rps"] / ref["rps"], 3) if ref["rps"] else None,
            "ratio_p99": round(hum["p99_ms"] / ref["p99_ms"], 3) if ref["p99_ms"] else None,
            "ratio_rps_rounds": [
                round(h.rps / b.rps, 3) for h, b in zip(runs["humtemp"], runs["bare"], strict=True)
            ],
        }
        # Each round's pair ran back to back, under the same machine load: the median of the
        # per-round ratios shrugs off a round that another job slowed (reported, not judged).
        by_conn[str(conns)]["ratio_rps_paired"] = _median(by_conn[str(conns)]["ratio_rps_rounds"])
        raw += [run.as_dict() for group in runs.values() for run in group]
        log(f"c{conns}: humtemp/bare = {by_conn[str(conns)]['ratio_rps']}")
    return {"by_connections": by_conn, "runs": raw}


def multiworker_phase(one: Service, many: Service, opts: Options, shards: list[LocalRedis]) -> dict:
    """humtemp --workers 1 vs --workers N, with each worker's CPU and its connections."""
    port = int(many.url.rsplit(":", 1)[1])
    seen: list[dict[str, int]] = []
    runs = interleave(
        [("workers_1", one), (f"workers_{opts.workers}", many)],
        "/observation",
        "observation.lua",
        lua_args(opts),
        opts.main_connections,
        opts,
        shards,
        midway={f"workers_{opts.workers}": lambda: seen.append(connections_per_pid(port))},
    )
    single = aggregate(runs["workers_1"])
    multi_runs = runs[f"workers_{opts.workers}"]
    multi = aggregate(multi_runs)
    per_process: dict[str, float] = {}
    for run in multi_runs:
        for key, seconds in run.cpu_s.items():
            if key.startswith("workers_"):
                per_process[key.split(":")[1]] = per_process.get(key.split(":")[1], 0) + seconds
    total = sum(per_process.values()) or 1.0
    shares = {pid: round(s / total, 3) for pid, s in per_process.items()}
    busy = sorted(shares.values(), reverse=True)
    return {
        "workers": opts.workers,
        "connections": opts.main_connections,
        "workers_1": single,
        f"workers_{opts.workers}": multi,
        "ratio_rps": round(multi["rps"] / single["rps"], 3) if single["rps"] else None,
        "cpu_seconds_per_process": {pid: round(s, 3) for pid, s in per_process.items()},
        "cpu_share_per_process": shares,
        "busy_processes": sum(1 for share in busy if share >= 0.1),
        "connections_per_pid": seen,
        "runs": [run.as_dict() for group in runs.values() for run in group],
    }


def batch_phase(humtemp: Service, bare: Service, opts: Options, shards: list[LocalRedis]) -> dict:
    """POST /observations with opts.batch_size observations per body, humtemp vs bare."""
    runs = interleave(
        [("humtemp", humtemp), ("bare", bare)],
        "/observations",
        "batch.lua",
        lua_args(opts),
        opts.batch_connections,
        opts,
        shards,
    )
    hum = aggregate(runs["humtemp"], per_request=opts.batch_size)
    ref = aggregate(runs["bare"], per_request=opts.batch_size)
    hum["obs_per_s"] = round(hum["rps"] * opts.batch_size)
    ref["obs_per_s"] = round(ref["rps"] * opts.batch_size)
    log(f"batch: humtemp {hum['obs_per_s']:,} obs/s, bare parse {ref['obs_per_s']:,} obs/s")
    return {
        "batch_size": opts.batch_size,
        "connections": opts.batch_connections,
        "humtemp": hum,
        "bare": ref,
        "runs": [run.as_dict() for group in runs.values() for run in group],
    }


def _post_json(url: str, payload: object) -> dict:
    body = json.dumps(payload).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def prefill(service: Service, first: int, last: int, chunk: int = 5000) -> None:
    """One observation for each lab s<first>..s<last-1>, in the current bucket, by batches."""
    now = int(time.time())
    for start in range(first, last, chunk):
        items = [
            {"lab_id": f"s{i:06d}", "timestamp": now, "temp": 20.0 + i % 10, "humidity": 50.0}
            for i in range(start, min(start + chunk, last))
        ]
        accepted = _post_json(service.url + "/observations", items)["accepted"]
        if accepted != len(items):
            raise RuntimeError(f"prefill: {accepted} of {len(items)} accepted")


def _count_labs(service: Service) -> tuple[int, int]:
    with urllib.request.urlopen(service.url + "/summary?offset=0", timeout=120) as resp:
        body = resp.read()
    return len(json.loads(body)), len(body)


def summary_phase(humtemp: Service, opts: Options, shards: list[LocalRedis]) -> dict:
    """GET /summary?offset=0 latency with growing numbers of labs spread over every shard."""
    for shard in shards:
        shard.client().flushall()
    filled = 0
    by_labs = {}
    for labs in sorted(opts.summary_labs):
        prefill(humtemp, filled, labs)
        filled = labs
        found, size = _count_labs(humtemp)
        if found != labs:
            raise RuntimeError(f"summary lists {found} labs, {labs} were written")
        keys = [shard.client().dbsize() for shard in shards]
        result = run_wrk(
            f"summary_{labs}",
            humtemp.url + "/summary?offset=0",
            "get.lua",
            [],
            1,
            max(opts.summary_duration, 1),
            watch={"humtemp": humtemp.pids()},
            timeout_s=30,
        )
        by_labs[str(labs)] = {
            "labs": labs,
            "shards": len(shards),
            "keys_per_shard": keys,
            "response_bytes": size,
            "requests": result.requests,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "max_ms": result.max_ms,
            "non_2xx": result.non_2xx,
            "socket_errors": result.socket_errors,
        }
        log(
            f"summary {labs} labs over {len(shards)} shards: p50 {result.p50_ms:.1f} ms "
            f"p99 {result.p99_ms:.1f} ms ({result.requests} requests, {size:,} bytes)"
        )
    return {"by_labs": by_labs}
