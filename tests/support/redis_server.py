"""Real redis-server processes for tests (the launcher is humtemp.localredis)."""

from __future__ import annotations

from pathlib import Path

from humtemp.localredis import LocalRedis, free_port

__all__ = ["RedisServer", "free_port"]


class RedisServer(LocalRedis):
    """A test shard: files in ``root/name``, AOF written before every reply by default."""

    def __init__(self, root: Path, name: str, appendonly: bool = True,
                 appendfsync: str = "always") -> None:
        # "always": Redis writes the AOF before every reply. With "everysec" it may
        # postpone the write() while a slow background fsync runs, so a kill -9 on a
        # loaded machine could lose an acknowledged write and make the tests flaky.
        super().__init__(root / name, name, appendonly=appendonly, appendfsync=appendfsync)
