"""A throw-away local deployment: N real redis-server shards and one humtemp server.

Everything binds 127.0.0.1 on free ports, lives in a temp dir, and is stopped by
PID (SIGTERM, then SIGKILL) when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from humtemp.localredis import LocalRedis, free_port
from humtemp.procstat import tree_cpu_seconds


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a process with stdout+stderr going to `log`."""
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM this process (only it, by PID), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _wait_for(check, what: str, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early with code {proc.returncode}")
        with contextlib.suppress(OSError):
            if check():
                return
        time.sleep(0.05)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def cpu_seconds_tree(proc: subprocess.Popen | None) -> float:
    """CPU seconds of a process and its children (humtemp --workers forks)."""
    return 0.0 if proc is None else tree_cpu_seconds(proc.pid)


@dataclass
class Deployment:
    base_url: str
    shards: list[LocalRedis]
    server: subprocess.Popen
    workdir: Path
    procs: list[subprocess.Popen] = field(default_factory=list)


def start_shard(workdir: Path, index: int, aof: bool = False) -> LocalRedis:
    """A redis-server on a free port; `aof` = append-only file with fsync every second,
    as the Helm chart runs its shards (otherwise no persistence at all)."""
    return LocalRedis(workdir / f"shard{index}", f"shard{index}", appendonly=aof).start()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def start_server(workdir: Path, shards: list[LocalRedis], workers: int,
                 extra_env: dict[str, str] | None = None) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "HUMTEMP_REDIS_URLS": ",".join(s.url for s in shards),
           "HUMTEMP_LOG_LEVEL": "warning", **(extra_env or {})}
    cmd = [sys.executable, "-m", "humtemp", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = spawn(cmd, workdir / "humtemp.log", env)
    url = f"http://127.0.0.1:{port}"
    _wait_for(lambda: _ready(url), "humtemp", 30, proc)
    return url, proc


@contextlib.contextmanager
def deployment(shards: int, workers: int, extra_env: dict[str, str] | None = None,
               keep: Path | None = None, aof: bool = False) -> Iterator[Deployment]:
    """Start shards and humtemp; stop all of them (by PID) on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="humtemp-lt-"))
    started: list[subprocess.Popen] = []
    try:
        shard_list = []
        for i in range(shards):
            shard = start_shard(workdir, i, aof)
            started.append(shard.proc)
            shard_list.append(shard)
        url, server = start_server(workdir, shard_list, workers, extra_env)
        started.append(server)
        yield Deployment(url, shard_list, server, workdir, started)
    finally:
        for proc in reversed(started):  # server first, so it drains into live shards
            stop(proc)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            for log in workdir.rglob("*.log"):
                shutil.copy(log, keep / f"{log.parent.name}-{log.name}")
        shutil.rmtree(workdir, ignore_errors=True)
