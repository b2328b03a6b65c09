"""Running the app: one worker process, or a supervisor of N that share the port.

Graceful shutdown (SIGTERM/SIGINT): mark not-ready, close the listener, let
in-flight requests finish (their flushes are still running), then drain every
shard queue and close connections. Nothing acknowledged is lost on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Sequence

from humtemp import __version__
from humtemp.config import ConfigError, Settings, ShardSpec
from humtemp.lifetime import die_with_parent

log = logging.getLogger("humtemp")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LINGERING_SECONDS = 10.0
"""aiohttp's default for reading an unread body after the answer (e.g. a 413)."""
EX_CONFIG = 78
"""Exit code of a worker that refused to start (sysexits EX_CONFIG): not restarted."""


class EarlySignals:
    """Remembers a SIGTERM/SIGINT that comes before the event loop or the supervisor
    takes the signals over, so that a stop requested during start-up is not lost."""

    def __init__(self) -> None:
        self.stop_requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._remember)

    def _remember(self, signum: int, frame: object) -> None:
        self.stop_requested = True


def _share_metrics_through(directory: str) -> None:
    """Put this worker's metrics in ``directory``, shared with the other workers.

    prometheus-client takes no argument for this: it reads the directory from the
    environment, once when ``prometheus_client`` is first imported (to choose its
    multiprocess value class, ``prometheus_client.values.get_value_class``) and again
    whenever a value opens its file. So this is the one place humtemp sets the variable:
    in the worker, before anything imports prometheus-client (``humtemp.server`` does not).
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client imported before the metrics directory was set")
    os.environ[MULTIPROC_ENV] = directory


def _tune_gc() -> None:
    """Once a worker has imported what it serves with, move it all out of the collector's
    reach, and collect the young generation less often (requests make little cyclic
    garbage). Measured under wrk load: GC time from ~20% of the CPU to ~1.5%
    (docs/benchmarks.md)."""
    import humtemp.app  # noqa: F401  (the modules a worker serves with, frozen below)

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


class DropClientProtocolErrors(logging.Filter):
    """aiohttp logs a full traceback for every malformed HTTP request it answers 400;
    that is the client's error, and a flood of them must not flood the log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            from aiohttp.http_exceptions import HttpProcessingError

            exc = record.exc_info[1]
            # A body that fails to decode surfaces as RequestPayloadError, caused by one.
            for error in (exc, exc.__cause__):
                if isinstance(error, HttpProcessingError) and 400 <= (error.code or 0) < 500:
                    return False
        return True


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.server").addFilter(DropClientProtocolErrors())


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def client_limits(settings: Settings) -> dict[str, float]:
    """How long a client may stall. aiohttp closes a connection still waiting for a
    complete request after ``keepalive_timeout``: that bounds a slow (slowloris) header
    read as well as idling. A stalled body is answered 408 after the same time
    (api._read_body); aiohttp then reads what still arrives for ``lingering_time``, so
    the client can see the 408, and closes the connection."""
    return {"keepalive_timeout": settings.client_timeout,
            "lingering_time": min(LINGERING_SECONDS, settings.client_timeout)}


async def serve(settings: Settings, shards: Sequence[ShardSpec], early: EarlySignals, *,
                reuse_port: bool = False, metrics_dir: str | None = None,
                supervisor_pid: int | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain and return. ``metrics_dir`` and
    ``supervisor_pid``: this is one of several workers, whose /metrics answers for all."""
    from aiohttp import web

    from humtemp.api import STATE
    from humtemp.app import create_app
    from humtemp.metrics import Exposition

    app = create_app(settings, shards, Exposition(metrics_dir, supervisor_pid))
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=settings.shutdown_timeout,
        **client_limits(settings),
    )
    try:
        await runner.setup()  # starts the shards: raises ConfigError on two names of one Redis
    except ConfigError as exc:
        print(f"humtemp: refusing to start: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG) from None
    site = web.TCPSite(
        runner, settings.host, settings.port, backlog=1024, reuse_port=reuse_port or None,
        shutdown_timeout=settings.shutdown_timeout,
    )
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"humtemp: cannot listen on {settings.host}:{settings.port}: "
                         f"{exc.strerror or exc}") from None
    # The app, its shards and their connections live as long as the worker: out of the
    # collector's reach too, as what the worker imported is (_tune_gc).
    gc.freeze()
    names = ", ".join(s.name for s in shards)
    log.info("humtemp %s serving on http://%s:%d with %d shard(s): %s",
             __version__, settings.host, settings.port, len(shards), names)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if early.stop_requested:
        stop.set()
    await stop.wait()
    log.info("shutting down: draining in-flight requests and shard queues")
    app[STATE]["draining"] = True
    await runner.cleanup()
    log.info("shutdown complete")


def run_worker(settings: Settings, shards: Sequence[ShardSpec], metrics_dir: str,
               supervisor_pid: int) -> None:
    """Entry point of one worker process of the supervisor."""
    supervisor = multiprocessing.parent_process()
    if supervisor is not None and supervisor.pid is not None:
        die_with_parent(supervisor.pid)  # no orphan worker keeps the port if it is killed
    early = EarlySignals()
    _share_metrics_through(metrics_dir)
    configure_logging(settings.log_level)
    _install_uvloop()
    _tune_gc()
    asyncio.run(serve(settings, shards, early, reuse_port=True, metrics_dir=metrics_dir,
                      supervisor_pid=supervisor_pid))


def _check_port_free(settings: Settings) -> None:
    """Fail in the supervisor, with one line, before forking workers that would all fail."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((settings.host, settings.port))
        except OSError as exc:
            raise SystemExit(f"humtemp: cannot listen on {settings.host}:{settings.port}: "
                             f"{exc.strerror or exc}") from None


class Supervisor:
    """Starts N workers with SO_REUSEPORT, restarts crashed ones, forwards SIGTERM."""

    def __init__(self, settings: Settings, shards: Sequence[ShardSpec], metrics_dir: str,
                 early: EarlySignals) -> None:
        self.settings = settings
        self.shards = list(shards)
        self.metrics_dir = metrics_dir
        self.early = early
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[multiprocessing.process.BaseProcess] = []
        self.stopping = False

    def _spawn(self) -> multiprocessing.process.BaseProcess:
        proc = self.context.Process(
            target=run_worker,
            args=(self.settings, self.shards, self.metrics_dir, os.getpid()),
            daemon=False,
        )
        proc.start()
        return proc

    def run(self) -> int:
        from humtemp.metrics import mark_worker_dead

        _check_port_free(self.settings)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        if self.early.stop_requested:
            return 0
        self.workers = [self._spawn() for _ in range(self.settings.workers)]
        log.info("supervisor %d started %d workers", os.getpid(), len(self.workers))
        while not self.stopping:
            time.sleep(0.2)
            for i, proc in enumerate(self.workers):
                if proc.is_alive() or self.stopping:
                    continue
                if proc.exitcode == EX_CONFIG:  # restarting it would only refuse again
                    log.error("worker %s refused to start; stopping", proc.pid)
                    self._on_signal(signal.SIGTERM, None)
                    return self._join_all() or EX_CONFIG
                log.error("worker %s exited with %s; restarting it", proc.pid, proc.exitcode)
                if proc.pid:
                    mark_worker_dead(proc.pid, self.metrics_dir)
                time.sleep(0.5)
                self.workers[i] = self._spawn()
        return self._join_all()

    def _join_all(self) -> int:
        deadline = time.monotonic() + self.settings.shutdown_timeout + 10
        code = 0
        for proc in self.workers:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                log.error("worker %s did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.join()
            code = code or (proc.exitcode or 0)
        return code

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("supervisor: %s, stopping workers", signal.Signals(signum).name)
        for proc in self.workers:
            if proc.pid and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)


def run(settings: Settings) -> int:
    """Start embedded shards if needed, then one worker in-process or a supervisor."""
    from humtemp.embedded import EmbeddedError, EmbeddedShards

    early = EarlySignals()
    configure_logging(settings.log_level)
    embedded: EmbeddedShards | None = None
    if settings.embedded:
        if settings.workers == 1:
            _check_port_free(settings)
        embedded = EmbeddedShards(settings.data_dir, settings.embedded_shards)
        try:
            shards: Sequence[ShardSpec] = embedded.start()
        except EmbeddedError as exc:
            print(f"humtemp: embedded mode: {exc}", file=sys.stderr)
            return 1
        log.info("no Redis configured (HUMTEMP_REDIS_URLS): embedded mode, data in %s",
                 embedded.data_dir)
    else:
        shards = settings.shards()
    multiproc_dir = None
    try:
        if settings.workers == 1:
            if early.stop_requested:
                return 0
            _install_uvloop()
            _tune_gc()
            asyncio.run(serve(settings, shards, early))
            return 0
        # An operator's PROMETHEUS_MULTIPROC_DIR is used as given (and kept); else a temp dir.
        metrics_dir = os.environ.get(MULTIPROC_ENV) or ""
        if not metrics_dir:
            metrics_dir = multiproc_dir = tempfile.mkdtemp(prefix="humtemp-metrics-")
        return Supervisor(settings, shards, metrics_dir, early).run()
    finally:
        if embedded is not None:
            embedded.stop()
            log.info("embedded shards stopped")
        if multiproc_dir:
            shutil.rmtree(multiproc_dir, ignore_errors=True)
