"""Profile humtemp under wrk load with py-spy: flamegraph SVG + where the samples land.

    pip install '.[bench]'   # py-spy
    python -m bench.profile --script observation.lua --duration 12 --out bench/results/

Starts 2 redis-server shards and one humtemp process (as the suite does), drives it with wrk
at c64 and samples it with `py-spy record` for the middle of the run. Prints the functions with
the most samples, by own time (leaf) and by total time (anywhere on the stack).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from bench.procs import stop
from bench.shards import start_shard
from bench.suite import Options, lua_args
from bench.targets import start_humtemp
from bench.wrk import WrkResult, run_wrk
from humtemp.extras import pip_extra, require_program

PATHS = {"observation.lua": "/observation", "batch.lua": "/observations"}


def top_frames(
    raw: str, limit: int = 25
) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, by own time, by total time) from py-spy's collapsed-stack (--format raw)."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        samples += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            total[frame] += int(count)
    return samples, own.most_common(limit), total.most_common(limit)


def profile(script: str, duration: float, connections: int, out: Path, rate: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"profile-{Path(script).stem}"
    opts = Options()
    with tempfile.TemporaryDirectory(prefix="humtemp-prof-") as tmp, ExitStack() as cleanup:
        shards = [start_shard(f"s{i}", Path(tmp) / f"r{i}", aof=True) for i in range(2)]
        for shard in shards:
            cleanup.callback(shard.stop)
        humtemp = start_humtemp("humtemp", shards, 1, Path(tmp) / "h", opts.bucket_duration)
        cleanup.callback(stop, humtemp)
        result: list[WrkResult] = []
        load = threading.Thread(
            target=lambda: result.append(
                run_wrk("humtemp", humtemp.url + PATHS[script], script, lua_args(opts),
                        connections, duration, {"humtemp": [humtemp.pid]})
            )
        )  # fmt: skip
        load.start()
        time.sleep(1)  # skip connection set-up and warm-up
        seconds = max(1, int(duration) - 3)
        for fmt, suffix in (("raw", ".txt"), ("flamegraph", ".svg")):
            # Two shorter recordings rather than one: raw for the table, SVG for reading.
            subprocess.run(
                ["py-spy", "record", "--pid", str(humtemp.pid), "--rate", str(rate), "--function",
                 "--duration", str(max(1, seconds // 2)), "--format", fmt,
                 "-o", f"{stem}{suffix}"],
                check=True, capture_output=True,
            )  # fmt: skip
        load.join()
    samples, own, total = top_frames(Path(f"{stem}.txt").read_text())
    lines = [f"{script} c{connections}: {result[0].rps:,.0f} req/s under profiling", ""]
    lines += [f"{samples} samples; by own time:"]
    lines += [f"{100 * n / samples:5.1f}%  {frame}" for frame, n in own]
    lines += ["", "by total time (on the stack):"]
    lines += [f"{100 * n / samples:5.1f}%  {frame}" for frame, n in total]
    report = Path(f"{stem}-top.txt")
    report.write_text("\n".join(lines) + "\n")
    print(report.read_text())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--script", choices=sorted(PATHS), default="observation.lua")
    parser.add_argument("--duration", type=float, default=12)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    require_program("python -m bench.profile", "py-spy", pip_extra("bench"))
    require_program("python -m bench.profile", "wrk", "apt-get install wrk")
    profile(args.script, args.duration, args.connections, args.out, args.rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
