"""`python -m bench`: start shards, humtemp and the bare server, measure, write JSON + PNG.

Examples:
    python -m bench                                   # full run (~5 min)
    python -m bench --quick --out /tmp/b              # CI smoke (~20 s)
    python -m bench --duration 10 --rounds 4 --connections 16,64,128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path

from bench import suite
from bench.plot import plot
from bench.procs import stop
from bench.reads import reads_phase
from bench.report import evaluate, print_report
from bench.shards import redis_version, start_shard
from bench.targets import start_bare, start_humtemp
from bench.wrk import wrk_version
from humtemp.extras import pip_extra, require_modules, require_program


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> tuple[suite.Options, Path, bool, bool]:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=f"{__doc__.splitlines()[0]} Needs wrk and: {pip_extra('bench')}",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke: c64 only, 1 round of 1 s, 1k labs for /summary",
    )
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, help="interleaved A B rounds (default 3)")
    parser.add_argument("--connections", type=_ints, help="comma list (default 16,64,128)")
    parser.add_argument(
        "--main-connections",
        type=int,
        default=64,
        help="the connection count the targets are judged at",
    )
    parser.add_argument("--batch-connections", type=int, default=64)
    parser.add_argument("--summary-labs", type=_ints, help="default 1000,10000,100000")
    parser.add_argument("--reads-labs", type=_ints,
                        help="reads under ingest: labs per bucket (default 100000,1000000)")
    parser.add_argument("--readers", type=int, help="reads under ingest: /summary clients (8)")
    parser.add_argument("--reads-duration", type=float, help="reads under ingest: seconds (15)")
    parser.add_argument("--reads-only", action="store_true",
                        help="run only the reads-under-ingest scenario")
    parser.add_argument("--workers", type=int, default=2, help="compared against --workers 1")
    parser.add_argument("--bucket-duration", type=int, default=86400)
    parser.add_argument("--no-aof", action="store_true", help="shards without appendonly")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    opts = suite.Options(
        main_connections=args.main_connections,
        batch_connections=args.batch_connections,
        workers=args.workers,
        bucket_duration=args.bucket_duration,
        aof=not args.no_aof,
    )
    if args.quick:
        opts.connections, opts.duration, opts.rounds, opts.warmup = [64], 1, 1, 0
        opts.summary_labs, opts.summary_duration = [1000], 1
    if args.quick:
        opts.reads_labs, opts.readers, opts.reads_duration = [1000], 2, 1
    for name in ("duration", "rounds", "connections", "summary_labs", "reads_labs", "readers",
                 "reads_duration"):
        if getattr(args, name) is not None:
            setattr(opts, name, getattr(args, name))
    if opts.main_connections not in opts.connections:
        opts.connections = sorted({*opts.connections, opts.main_connections})
    return opts, args.out, args.quick, args.reads_only


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {}
    for pkg in ("aiohttp", "msgspec", "uvloop", "redis", "hiredis"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis_server": redis_version(),
        "wrk": wrk_version(),
        "packages": versions,
    }


def load_average() -> list[float]:
    """1/5/15-minute load: the machine is shared, so say how busy it was."""
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def run(opts: suite.Options, workdir: Path, reads_only: bool = False) -> dict:
    """All phases, with every process this run started stopped on the way out."""
    result: dict = {"options": opts.__dict__, "machine": machine()}
    result["load_average_start"] = load_average()
    with ExitStack() as cleanup:
        suite.log("starting 3 redis-server shards")
        shards = []
        for i in range(3):
            shards.append(start_shard(f"s{i}", workdir / f"redis{i}", opts.aof))
            cleanup.callback(shards[-1].stop)
        if reads_only:
            result["reads"] = _reads(opts, shards, workdir, cleanup)
            result["load_average_end"] = load_average()
            return result
        suite.log(f"starting humtemp (2 shards, --workers 1 and --workers {opts.workers}) and bare")
        ingest_shards = shards[:2]
        one = start_humtemp("humtemp", ingest_shards, 1, workdir / "h1", opts.bucket_duration)
        cleanup.callback(stop, one)
        many = start_humtemp(
            "humtemp_multi", ingest_shards, opts.workers, workdir / "hN", opts.bucket_duration
        )
        cleanup.callback(stop, many)
        bare = start_bare(workdir)
        cleanup.callback(stop, bare)

        suite.log(
            f"ingest: connections {opts.connections}, {opts.rounds} rounds x "
            f"{opts.duration}s, interleaved humtemp/bare"
        )
        result["ingest"] = suite.ingest_phase(one, bare, opts, ingest_shards)
        suite.log("multi-worker comparison")
        result["multiworker"] = suite.multiworker_phase(one, many, opts, ingest_shards)
        suite.log("batch ingestion")
        result["batch"] = suite.batch_phase(one, bare, opts, ingest_shards)
        stop(many)
        stop(one)

        suite.log("summary latency: humtemp on 3 shards")
        three = start_humtemp("humtemp_3", shards, 1, workdir / "h3", opts.bucket_duration)
        cleanup.callback(stop, three)
        result["summary"] = suite.summary_phase(three, opts, shards)
        stop(three)
        result["reads"] = _reads(opts, shards, workdir, cleanup)
    result["load_average_end"] = load_average()
    return result


def _reads(opts: suite.Options, shards: list, workdir: Path, cleanup: ExitStack) -> dict:
    """Reads under ingest, on a humtemp of its own over the 3 shards."""
    suite.log(f"reads under ingest: {opts.reads_labs} labs, {opts.readers} /summary readers, "
              f"{opts.reads_duration}s each")
    service = start_humtemp("humtemp_reads", shards, 1, workdir / "hr", opts.bucket_duration)
    cleanup.callback(stop, service)
    result = reads_phase(service, shards, opts.reads_labs, opts.readers, opts.reads_duration,
                         opts.bucket_duration)
    for labs, row in result["by_labs"].items():
        suite.log(f"reads {labs} labs: writes p50 {row['write_p50_ms']} ms p99 "
                  f"{row['write_p99_ms']} ms (alone: {row['writer_alone_p99_ms']} ms), "
                  f"{row['writes_503']} x 503, {row['reads']} reads "
                  f"of {row['response_bytes']:,} B, {row['redis_ms_per_fanout']} ms Redis per "
                  f"fan-out, slowest command {row['any_command_max_ms']} ms, "
                  f"RSS {row['humtemp_peak_rss_mib']} MiB")
    stop(service)
    return result


def main(argv: list[str] | None = None) -> int:
    opts, out, quick, reads_only = parse_args(argv)
    require_modules("python -m bench", "bench", "matplotlib")
    require_program("python -m bench", "wrk", "apt-get install wrk")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="humtemp-bench-") as tmp:
        result = run(opts, Path(tmp), reads_only)
    result["command"] = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    result["quick"] = quick
    result["started_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))
    result["elapsed_s"] = round(time.time() - started, 1)
    if reads_only:
        out.mkdir(parents=True, exist_ok=True)
        path = out / ("reads-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started)) + ".json")
        path.write_text(json.dumps(result, indent=1) + "\n")
        print(f"\nwrote {path} in {result['elapsed_s']} s")
        return 0
    result["targets"] = evaluate(result, opts.main_connections)
    out.mkdir(parents=True, exist_ok=True)
    stem = "bench-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(started))
    result["plot"] = str(out / f"{stem}.png")
    plot(result, out / f"{stem}.png")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    print_report(result)
    print(f"\nwrote {out / (stem + '.json')} and {result['plot']} in {result['elapsed_s']} s")
    return 0
