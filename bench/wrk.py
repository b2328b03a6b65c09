"""Run wrk against one target and measure what it cost each process while it ran."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from humtemp.procstat import cpu_seconds

LUA_DIR = Path(__file__).resolve().parent / "lua"


@dataclass
class WrkResult:
    """One wrk run: throughput, latency percentiles, errors and per-process CPU."""

    target: str
    connections: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int
    socket_errors: int
    cpu_s: dict[str, float] = field(default_factory=dict)  # "<role>:<pid>" -> CPU seconds
    redis_cpu_s: float = 0.0  # /proc CPU delta over every shard
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def wrk_version() -> str:
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return (out.stdout + out.stderr).splitlines()[0].strip()


def run_wrk(
    target: str,
    url: str,
    script: str,
    script_args: list[str],
    connections: int,
    duration: float,
    watch: dict[str, list[int]],
    redis_cpu: Callable[[], float] | None = None,
    timeout_s: float = 5.0,
    midway: Callable[[], None] | None = None,
) -> WrkResult:
    """`wrk -t1 -cC -dD --latency -s script url -- args`, sampling CPU of `watch` around it.

    `watch` maps a role ("humtemp", "redis", ...) to PIDs; the CPU of each is read from
    /proc before and after, so the cost per request of every process can be compared.
    `midway` runs once halfway through (e.g. to see which worker holds which connection).
    """
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found: apt-get install wrk")
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(LUA_DIR / script),
        url,
        "--",
        *script_args,
    ]
    env = {**os.environ, "LUA_PATH": f"{LUA_DIR}/?.lua;;"}
    pids = {f"{role}:{pid}": pid for role, group in watch.items() for pid in group}
    cpu_before = {key: cpu_seconds(pid) for key, pid in pids.items()}
    redis_before = redis_cpu() if redis_cpu else 0.0
    wrk_before = _children_cpu()
    timer = threading.Timer(duration / 2, midway) if midway else None
    if timer:
        timer.start()
    started = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=duration + 60)
    wall = time.monotonic() - started
    if timer:
        timer.join()
    redis_after = redis_cpu() if redis_cpu else 0.0
    cpu = {key: round(cpu_seconds(pid) - cpu_before[key], 3) for key, pid in pids.items()}
    cpu["wrk"] = round(_children_cpu() - wrk_before, 3)
    report = _parse(proc.stdout)
    if proc.returncode != 0 or report is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    errors = report["errors"]
    lat = report["latency_us"]
    seconds = report["duration_us"] / 1e6 or wall
    return WrkResult(
        target=target,
        connections=connections,
        duration_s=round(seconds, 3),
        requests=report["requests"],
        rps=round(report["requests"] / seconds, 1),
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        non_2xx=errors["status"],
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        cpu_s=cpu,
        redis_cpu_s=round(redis_after - redis_before, 4),
    )


def _children_cpu() -> float:
    """CPU of reaped children: around one subprocess.run, exactly wrk's own cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _parse(stdout: str) -> dict | None:
    for line in stdout.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])
    return None
