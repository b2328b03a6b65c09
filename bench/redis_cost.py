"""Redis CPU per group-commit call, by labs per call: what a flush costs the shard.

    python -m bench.redis_cost [--calls 4000] [--labs-per-call 1,8,16,32,128] [--no-aof]

One real redis-server (AOF on, as the suite runs it), the write script loaded, 1000 labs
already stored in the current bucket. Then, one round trip at a time as humtemp's flusher
does, it sends calls of k labs each (different labs, so every lab is a real merge) and
reads the server's own CPU accounting (INFO cpu, user and sys) around them. PING and a
trivial EVALSHA give the floor every call pays before any merging. The split shows why a
single-observation POST at c64 costs more Redis CPU per observation than a batch: the
per-call part is divided by the observations a flush carries.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from bench.shards import redis_version, start_shard
from humtemp.shard import WRITE_SCRIPT

PREFIX = "cost:"
LABS = [f"lab-{i:04d}" for i in range(1000)]


def _payload(labs: list[str], bucket: int) -> bytes:
    rows: list[object] = []
    for lab in labs:
        rows += [lab, 1, 20.5, 45.0, 20.5, 20.5, 45.0, 45.0]
    return msgspec.msgpack.encode([[[str(bucket), int(time.time()) + 86400, rows]], []])


def measure(calls: int, per_call: list[int], aof: bool) -> list[tuple[str, float, float]]:
    """(what, Redis user µs, Redis sys µs) per call."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="humtemp-rcost-") as tmp:
        shard = start_shard("cost", Path(tmp), aof=aof)
        try:
            client = shard.client(socket_timeout=30)
            write = client.script_load(WRITE_SCRIPT)
            trivial = client.script_load("return 1")
            bucket = (int(time.time()) // 86400) * 86400
            client.evalsha(write, 0, PREFIX, _payload(LABS, bucket), "agg")
            conn = client.connection_pool.get_connection()

            def cpu() -> tuple[float, float]:
                info = client.info("cpu")
                return float(info["used_cpu_user"]), float(info["used_cpu_sys"])

            def run(what: str, command: Callable[[int], tuple[object, ...]]) -> None:
                user0, sys0 = cpu()
                for i in range(calls):
                    conn.send_command(*command(i))
                    conn.read_response()
                user1, sys1 = cpu()
                rows.append((what, 1e6 * (user1 - user0) / calls, 1e6 * (sys1 - sys0) / calls))
                print(f"  {what:<22} user {rows[-1][1]:6.1f} us  sys {rows[-1][2]:6.1f} us",
                      flush=True)

            run("PING", lambda i: ("PING",))
            run("EVALSHA 'return 1'", lambda i: ("EVALSHA", trivial, 0))
            for k in per_call:
                bodies = [_payload(random.sample(LABS, k), bucket) for _ in range(64)]
                run(f"write.lua, {k} labs", lambda i, b=bodies: (
                    "EVALSHA", write, 0, PREFIX, b[i % len(b)], "agg"))
            client.connection_pool.release(conn)
        finally:
            shard.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.redis_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000, help="calls per measurement")
    parser.add_argument("--labs-per-call", default="1,8,16,32,128")
    parser.add_argument("--no-aof", action="store_true")
    opts = parser.parse_args(argv)
    per_call = [int(k) for k in opts.labs_per_call.split(",")]
    print(f"{redis_version()}; {opts.calls} round trips each; AOF {'off' if opts.no_aof else 'on'}")
    rows = measure(opts.calls, per_call, aof=not opts.no_aof)
    print("\n| call | Redis CPU µs per call (user + sys) | per lab |")
    print("|---|---|---|")
    for what, user, system in rows:
        labs = int(what.split(", ")[1].split()[0]) if what.startswith("write.lua") else None
        per_lab = f"{(user + system) / labs:.2f}" if labs else "–"
        print(f"| {what} | {user + system:.1f} ({user:.1f} + {system:.1f}) | {per_lab} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
