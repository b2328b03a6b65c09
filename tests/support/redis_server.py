"""Real redis-server processes for tests: free ports, temp dirs, AOF optional."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

from humtemp.embedded import redis_server_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server on 127.0.0.1; can be killed (-9) and restarted on the same port."""

    def __init__(self, directory: Path, name: str, appendonly: bool = True,
                 appendfsync: str = "always") -> None:
        self.directory = directory / name
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.appendonly = appendonly
        # "always": Redis writes the AOF before every reply. With "everysec" it may
        # postpone the write() while a slow background fsync runs, so a kill -9 on a
        # loaded machine could lose an acknowledged write and make the tests flaky.
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def spec(self) -> str:
        return f"{self.name}={self.url}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        conf = self.directory / "redis.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"appendonly {'yes' if self.appendonly else 'no'}\nappendfsync {self.appendfsync}\n"
            'save ""\ndaemonize no\nloglevel warning\n'
            f"logfile {self.directory / 'redis.log'}\n"
        )
        self.proc = subprocess.Popen([redis_server_binary(), str(conf)], stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        client = self.client()
        while True:
            try:
                if client.info("persistence").get("loading", 0) == 0:
                    return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"redis-server {self.name} did not start")
            time.sleep(0.02)

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
