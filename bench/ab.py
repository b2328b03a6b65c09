"""A/B two versions of humtemp: this checkout against a git revision, same shards.

`python -m bench.ab REV [--rounds 6] [--duration 5] [--connections 64] [--bare]
[--new-env NAME=VALUE]`

Both servers run on the same two redis-server shards (different key prefixes, so
storage formats may differ) and are driven alternately, A B A B, by the same wrk
script as the suite: on a noisy machine only interleaved runs compare fairly.
Besides req/s it reports the server's CPU per request and Redis CPU per observation,
which move less than req/s when other jobs share the machine. `--bare` adds the
reference server as a third arm, so each version's ratio to it shows too.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import start, stop, wait_http
from bench.shards import start_shard, total_cpu
from bench.targets import start_bare
from bench.wrk import WrkResult, run_wrk
from humtemp.localredis import free_port

REPO = Path(__file__).resolve().parent.parent
BATCH = 100
"""Observations per request with --batch (as the suite's batch phase)."""


def _serve(name: str, tree: Path, shard_urls: str, workdir: Path,  # type: ignore[no-untyped-def]
           extra_env: dict[str, str]):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "HUMTEMP_REDIS_URLS": shard_urls,
           "HUMTEMP_KEY_PREFIX": f"ab-{name}:", "HUMTEMP_LOG_LEVEL": "warning", **extra_env}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    rundir = workdir / f"run-{name}"
    rundir.mkdir()
    service = start(name, [sys.executable, "-m", "humtemp", "serve", "--port", str(port)],
                    f"http://127.0.0.1:{port}", rundir / "log", env)
    wait_http(service, "/readyz", timeout=60)
    return service


def _cpu_per_request(result: WrkResult) -> float:
    return 1e6 * sum(result.cpu_s.values()) / max(result.requests, 1)


def _report(runs: dict[str, list[WrkResult]], per_request: int) -> None:
    """Medians per version, then new/old (and each version over bare, if it ran)."""
    median = statistics.median
    rps = {name: median(r.rps for r in results) for name, results in runs.items()}
    for name, results in runs.items():
        redis = median(1e6 * r.redis_cpu_s / max(r.requests * per_request, 1) for r in results)
        print(f"{name:>4}: median {rps[name]:,.0f} req/s, "
              f"{median(_cpu_per_request(r) for r in results):.1f} us CPU/req, "
              f"p99 {median(r.p99_ms for r in results):.2f} ms, Redis {redis:.1f} us/obs")
    print(f"new/old req/s {rps['new'] / rps['old']:.3f}")
    if "bare" in rps:
        print(f"old/bare {rps['old'] / rps['bare']:.3f}, new/bare {rps['new'] / rps['bare']:.3f}; "
              "per round new/bare: " + ", ".join(
                  f"{n.rps / b.rps:.3f}" for n, b in zip(runs["new"], runs["bare"], strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="git revision to compare this checkout against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--bare", action="store_true", help="also run the bare aiohttp server")
    parser.add_argument("--batch", action="store_true",
                        help="POST /observations with batches of 100 instead of single posts")
    parser.add_argument("--new-env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment of the new arm only, e.g. HUMTEMP_FLUSH_LINGER=0.001 "
                             "(with REV = HEAD this A/Bs a setting)")
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="humtemp-ab-") as tmp:
        workdir = Path(tmp)
        old_tree = workdir / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                        str(old_tree), opts.rev], check=True)
        shards = [start_shard(f"ab{i}", workdir / f"shard{i}", aof=True) for i in range(2)]
        services = {}
        try:
            urls = ",".join(s.spec for s in shards)
            new_env = dict(item.split("=", 1) for item in opts.new_env)
            services = {"old": _serve("old", old_tree, urls, workdir, {}),
                        "new": _serve("new", REPO, urls, workdir, new_env)}
            if opts.bare:
                services["bare"] = start_bare(workdir)
                wait_http(services["bare"], "/healthz")
            runs: dict[str, list[WrkResult]] = {name: [] for name in services}
            args = ["86400", "0", "1000", str(BATCH)]
            path, script = ("/observations", "batch.lua") if opts.batch else (
                "/observation", "observation.lua")
            for rnd in range(opts.rounds):
                for name, service in services.items():
                    result = run_wrk(name, service.url + path, script, args,
                                     opts.connections, opts.duration, {name: service.pids()},
                                     redis_cpu=lambda: total_cpu(shards))
                    runs[name].append(result)
                    print(f"round {rnd + 1}/{opts.rounds} {name}: {result.rps:,.0f} req/s, "
                          f"{_cpu_per_request(result):.1f} us CPU/req", flush=True)
            _report(runs, BATCH if opts.batch else 1)
        finally:
            for service in services.values():
                stop(service)
            for shard in shards:
                shard.stop()
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                            str(old_tree)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
