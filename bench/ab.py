"""A/B two versions of humtemp: this checkout against a git revision, same shards.

`python -m bench.ab REV [--rounds 6] [--duration 5] [--connections 64]`

Both servers run on the same two redis-server shards (different key prefixes, so
storage formats may differ) and are driven alternately, A B A B, by the same wrk
script as the suite: on a noisy machine only interleaved runs compare fairly.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import free_port, start, stop, wait_http
from bench.shards import start_shard
from bench.wrk import run_wrk

REPO = Path(__file__).resolve().parent.parent


def _serve(name: str, tree: Path, shard_urls: str, workdir: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "HUMTEMP_REDIS_URLS": shard_urls,
           "HUMTEMP_KEY_PREFIX": f"ab-{name}:", "HUMTEMP_LOG_LEVEL": "warning"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    rundir = workdir / f"run-{name}"
    rundir.mkdir()
    service = start(name, [sys.executable, "-m", "humtemp", "serve", "--port", str(port)],
                    f"http://127.0.0.1:{port}", rundir / "log", env)
    wait_http(service, "/readyz", timeout=60)
    return service


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rev", help="git revision to compare this checkout against")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="humtemp-ab-") as tmp:
        workdir = Path(tmp)
        old_tree = workdir / "old"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q",
                        str(old_tree), opts.rev], check=True)
        shards = [start_shard(f"ab{i}", workdir / f"shard{i}", aof=True) for i in range(2)]
        services = {}
        try:
            urls = ",".join(s.url for s in shards)
            services = {"old": _serve("old", old_tree, urls, workdir),
                        "new": _serve("new", REPO, urls, workdir)}
            rps: dict[str, list[float]] = {"old": [], "new": []}
            args = ["86400", "0", "1000", "100"]
            for rnd in range(opts.rounds):
                for name, service in services.items():
                    result = run_wrk(name, service.url + "/observation", "observation.lua", args,
                                     opts.connections, opts.duration, {})
                    rps[name].append(result.rps)
                    print(f"round {rnd + 1}/{opts.rounds} {name}: {result.rps:,.0f} req/s",
                          flush=True)
            old, new = (statistics.median(rps[k]) for k in ("old", "new"))
            print(f"median req/s: old {old:,.0f}, new {new:,.0f}; new/old {new / old:.3f}")
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
