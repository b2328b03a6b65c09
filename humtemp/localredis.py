"""A throw-away redis-server on 127.0.0.1: the one launcher of the tests, bench and loadtest.

It lives in the package (as aiohttp ships ``aiohttp.test_utils``) because it is the only
place all of them can import: ``bench`` and ``loadtest`` are top-level tools outside the
wheel, ``tests`` is not a package they may depend on. Embedded mode has its own
launcher (unix sockets, a locked data directory, kept across restarts) in
:mod:`humtemp.embedded`; both find the binary with :func:`redis_server_binary`.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from humtemp.embedded import redis_server_binary
from humtemp.procstat import cpu_seconds

__all__ = ["LocalRedis", "free_port", "redis_server_binary"]


def free_port() -> int:
    """A port the kernel just handed out on 127.0.0.1 (bind port 0, then release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    """One redis-server on a free 127.0.0.1 port with its files in ``directory``.

    It can be killed (-9, what a crash looks like) and started again on the same port
    and data; ``start`` returns once the server answers and has loaded its AOF.
    """

    def __init__(self, directory: Path, name: str, *, appendonly: bool = True,
                 appendfsync: str = "everysec", binary: str | None = None) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.binary = binary
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def spec(self) -> str:
        """``name=url``, one entry of HUMTEMP_REDIS_URLS."""
        return f"{self.name}={self.url}"

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    def start(self, timeout: float = 10.0) -> LocalRedis:
        conf = self.directory / "redis.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"appendonly {'yes' if self.appendonly else 'no'}\nappendfsync {self.appendfsync}\n"
            f'save ""\ndaemonize no\nloglevel warning\nlogfile {self.log}\n'
        )
        with (self.directory / "redis.out").open("wb") as out:  # errors before the logfile
            self.proc = subprocess.Popen(
                [self.binary or redis_server_binary(), str(conf)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            )
        self._wait_loaded(timeout)
        return self

    def _wait_loaded(self, timeout: float) -> None:
        """Until INFO says ``loading:0``: before that, commands answer LOADING."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        # No retries: redis-py's default backs off for seconds on a refused connection.
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1,
                             retry=Retry(NoBackoff(), 0))
        try:
            while True:
                try:
                    if client.info("persistence").get("loading", 0) == 0:
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"redis-server {self.name} did not start on port {self.port}: "
                        f"{self._output_tail()}")
                time.sleep(0.02)
        finally:
            client.close()

    def _output_tail(self, lines: int = 5) -> str:
        text = ""
        for path in (self.directory / "redis.out", self.log):
            if path.exists():
                text += path.read_text(errors="replace")
        return " | ".join(text.strip().splitlines()[-lines:])

    def client(self, socket_timeout: float = 5.0) -> redis.Redis:
        """A new client of this server (callers own and may close it)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=socket_timeout)

    def cpu_seconds(self) -> float:
        """CPU time the server has used, from /proc (it need not answer to be measured)."""
        return cpu_seconds(self.pid)

    def kill(self) -> None:
        """kill -9: what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (redis-server fsyncs its AOF on the way out), SIGKILL if it lingers."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
