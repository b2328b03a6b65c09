"""The servers under test: humtemp (from this checkout) and the bare aiohttp reference."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

from bench.procs import Service, start, wait_http
from humtemp.localredis import LocalRedis, free_port

REPO = Path(__file__).resolve().parent.parent


def _python_env(extra: dict[str, str]) -> dict[str, str]:
    """Run this checkout's code, whatever `pip install -e` points at."""
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
        **extra,
    }


def humtemp_command(port: int, workers: int) -> list[str]:
    if (REPO / "humtemp" / "__main__.py").exists():
        entry = [sys.executable, "-m", "humtemp"]
    else:
        entry = [sys.executable, "-c", "import sys; from humtemp.cli import main; sys.exit(main())"]
    return [*entry, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]


def start_humtemp(
    name: str, shards: list[LocalRedis], workers: int, workdir: Path, bucket_duration: int
) -> Service:
    """`humtemp serve --port P --workers N` on `shards`; returns once /readyz says ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = _python_env(
        {
            "HUMTEMP_REDIS_URLS": ",".join(shard.spec for shard in shards),
            "HUMTEMP_BUCKET_DURATION": str(bucket_duration),
            "HUMTEMP_BUCKET_OFFSET": "1970-01-01T00:00:00+00:00",
            "HUMTEMP_DATA_DIR": str(workdir / "data"),
            "HUMTEMP_LOG_LEVEL": "warning",
        }
    )
    # humtemp makes its own multiprocess metrics dir for --workers > 1; an inherited one
    # would put the single process in (slower) multiprocess mode too.
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    service = start(
        name, humtemp_command(port, workers), f"http://127.0.0.1:{port}", workdir / "log", env
    )
    wait_http(service, "/readyz", timeout=60)
    if workers > 1:
        _wait_workers(service, workers)
    return service


def _wait_workers(service: Service, workers: int) -> None:
    """Block until the worker processes exist, so CPU sampling sees all of them."""
    deadline = time.monotonic() + 30
    while len(service.pids()) < workers and time.monotonic() < deadline:
        time.sleep(0.1)


def start_bare(workdir: Path) -> Service:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.bare_server", "--port", str(port)]
    service = start("bare", cmd, f"http://127.0.0.1:{port}", workdir / "bare.log", _python_env({}))
    wait_http(service, "/healthz", timeout=30)
    return service


_SS_PID = re.compile(r"pid=(\d+)")


def connections_per_pid(port: int) -> dict[str, int]:
    """Established server-side connections on `port`, counted per owning PID (via `ss -p`)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
    ).stdout
    counts: Counter[str] = Counter()
    for line in out.splitlines():
        pids = set(_SS_PID.findall(line))
        counts[",".join(sorted(pids)) or "unknown"] += 1
    return dict(counts)


_FLUSH_OBS = re.compile(
    r"^humtemp_shard_flush_observations_(sum|count)\{[^}]*\} (\S+)$", re.MULTILINE
)


def flush_totals(service: Service) -> tuple[float, float] | None:
    """(observations, flushes) over every shard so far, from humtemp's /metrics; None for a
    server without them (the bare reference)."""
    try:
        with urllib.request.urlopen(service.url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    totals = {"sum": 0.0, "count": 0.0}
    for kind, value in _FLUSH_OBS.findall(text):
        totals[kind] += float(value)
    return totals["sum"], totals["count"]
