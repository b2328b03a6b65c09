"""One Redis shard: its group-commit writer and its circuit breaker (reads: reader.py).

Write path: ``submit`` merges observations into the open batch and returns the
batch's future. One flusher task per shard owns one connection and sends each
batch as ONE ``EVALSHA`` call; everything that arrived while a flush was in
flight forms the next batch. A request is answered only when its batch's future
resolved, i.e. after Redis replied: acknowledged means stored.

Failure handling: an error while *connecting* means nothing was sent, so the
batch may safely go to another shard (:class:`ShardUnavailable`). An error or
timeout after sending leaves the outcome unknown (:class:`ShardOutcomeUnknown`):
the write may still be applied, so it must not be re-routed (it would count
twice); the client gets a 503 and, with exactly-once on, may retry safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from humtemp import metrics
from humtemp.config import Settings, ShardSpec
from humtemp.tally import Tallies

log = logging.getLogger(__name__)

WRITE_SCRIPT = resources.files("humtemp").joinpath("lua/write.lua").read_text()
_pack = msgspec.msgpack.Encoder().encode
IDLE_CHECK_SECONDS = 1.0


class ShardError(Exception):
    """Base of the errors a shard write can end in."""

    def __init__(self, shard: str, detail: str) -> None:
        super().__init__(f"shard {shard}: {detail}")
        self.shard = shard


class ShardUnavailable(ShardError):
    """The shard certainly did not receive the write (down, or connect failed)."""


class ShardOutcomeUnknown(ShardError):
    """The write was sent but not confirmed: it may or may not be applied."""


class ShardOverloaded(ShardError):
    """Too many observations queued for this shard: back-pressure, retry later."""


def _script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


WRITE_SHA = _script_sha(WRITE_SCRIPT)


def _peer_closed(conn: AbstractConnection) -> bool:
    """True if the server already closed this connection (EOF seen by the event loop)."""
    reader = getattr(conn, "_reader", None)
    return reader is not None and reader.at_eof()


class Batch:
    """Observations collected for one flush, merged per (bucket, lab) as they arrive."""

    __slots__ = ("future", "groups", "observations")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.future: asyncio.Future[None] = loop.create_future()
        self.groups: dict[int, dict[str, Any]] = {}
        self.observations = 0

    def add(self, lab_id: str, bucket: int, temp: float, humidity: float) -> None:
        """Merge into the lab's [n, temp sum, humidity sum, temp min/max, humidity min/max]:
        a plain list, the order write.lua reads, so the payload needs no conversion."""
        labs = self.groups.get(bucket)
        if labs is None:
            labs = self.groups[bucket] = {}
        agg = labs.get(lab_id)
        if agg is None:
            labs[lab_id] = [1, temp, humidity, temp, temp, humidity, humidity]
        else:
            agg[0] += 1
            agg[1] += temp
            agg[2] += humidity
            if temp < agg[3]:
                agg[3] = temp
            elif temp > agg[4]:
                agg[4] = temp
            if humidity < agg[5]:
                agg[5] = humidity
            elif humidity > agg[6]:
                agg[6] = humidity
        self.observations += 1

    def add_raw(self, lab_id: str, bucket: int, ts: int, temp: float, humidity: float) -> None:
        """Exactly-once mode keeps each reading: Redis drops repeated timestamps."""
        labs = self.groups.setdefault(bucket, {})
        labs.setdefault(lab_id, []).extend((ts, temp, humidity))
        self.observations += 1

    def payload(self, expire_at: Callable[[int], int], dedup: bool) -> bytes:
        groups = []
        for bucket, labs in self.groups.items():
            rows: list[Any] = []
            if dedup:
                for lab_id, readings in labs.items():
                    rows.append(lab_id)
                    rows.append(readings)
            else:
                for lab_id, agg in labs.items():
                    rows.append(lab_id)
                    rows.extend(agg)
            groups.append((str(bucket), expire_at(bucket), rows))
        return _pack(groups)

    @property
    def keys(self) -> int:
        return sum(len(labs) for labs in self.groups.values())


class Shard:
    """A shard's connection, write queue and up/down state."""

    def __init__(
        self,
        spec: ShardSpec,
        settings: Settings,
        expire_at: Callable[[int], int],
        on_state_change: Callable[[Shard], None],
        tallies: Tallies,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.settings = settings
        self._expire_at = expire_at
        self._on_state_change = on_state_change
        self._dedup = settings.exactly_once
        self._linger = settings.flush_linger
        self._mode = b"dedup" if self._dedup else b"agg"
        self._prefix = settings.key_prefix.encode()
        self._command_head = b"".join(
            b"$%d\r\n%s\r\n" % (len(part), part)
            for part in (b"EVALSHA", WRITE_SHA.encode(), b"0", self._prefix)
        )
        self._command_head = b"*6\r\n" + self._command_head
        self._command_tail = b"\r\n$%d\r\n%s\r\n" % (len(self._mode), self._mode)
        common: dict[str, Any] = {
            "socket_connect_timeout": settings.redis_connect_timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
            "client_name": "humtemp",
        }
        self._write_pool = ConnectionPool.from_url(spec.url, socket_timeout=None, **common)
        self._conn: AbstractConnection | None = None
        self._last_used = 0.0
        self.reader = Redis.from_url(
            spec.url, socket_timeout=settings.redis_timeout, max_connections=16, **common
        )
        self.up = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batch: Batch | None = None
        self._inflight = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._up_gauge = metrics.SHARD_UP.labels(shard=self.name)
        pending_gauge = metrics.SHARD_PENDING.labels(shard=self.name)
        tallies.sample(lambda: pending_gauge.set(self.pending))
        self._flush_time = tallies.histogram(
            metrics.SHARD_FLUSH_DURATION.labels(shard=self.name), metrics.LATENCY_BUCKETS)
        self._flush_keys = tallies.histogram(
            metrics.SHARD_FLUSH_KEYS.labels(shard=self.name), metrics.SIZE_BUCKETS)
        self._flush_obs = tallies.histogram(
            metrics.SHARD_FLUSH_OBSERVATIONS.labels(shard=self.name), metrics.SIZE_BUCKETS)
        self._up_gauge.set(1)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the flusher; an unreachable shard starts as down, not as an error."""
        self._loop = asyncio.get_running_loop()
        self._batch = Batch(self._loop)
        self._flusher = self._loop.create_task(self._flush_forever(), name=f"flush-{self.name}")
        try:
            await self._connection()
        except (RedisError, OSError, TimeoutError) as exc:
            self._mark_down(f"unreachable at start: {exc}")

    async def close(self) -> None:
        """Flush what is queued, then close: called after the server stopped accepting."""
        self._closing = True
        self._wakeup.set()
        if self._flusher:
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._prober:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        await self._drop_connection()
        await self.reader.aclose()
        await self._write_pool.disconnect()

    # -- writes ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        queued = self._batch.observations if self._batch else 0
        return queued + self._inflight

    def admit(self, count: int) -> None:
        """Raise unless ``count`` more observations may be queued here right now."""
        if not self.up:
            raise ShardUnavailable(self.name, "marked down")
        if self.pending + count > self.settings.max_pending:
            metrics.SHARD_ERRORS.labels(shard=self.name, kind="overloaded").inc()
            raise ShardOverloaded(self.name, "write queue full")

    def submit(self, items: list[tuple[str, int, int, float, float]]) -> asyncio.Future[None]:
        """Queue (lab_id, bucket, ts, temp, humidity) items; the future resolves when stored."""
        self.admit(len(items))
        batch = self._batch
        assert batch is not None, "shard not started"
        if self._dedup:
            for lab_id, bucket, ts, temp, hum in items:
                batch.add_raw(lab_id, bucket, ts, temp, hum)
        else:
            for lab_id, bucket, _ts, temp, hum in items:
                batch.add(lab_id, bucket, temp, hum)
        self._wakeup.set()
        return batch.future

    def submit_one(
        self, lab_id: str, bucket: int, ts: int, temp: float, humidity: float
    ) -> asyncio.Future[None]:
        """The single-observation fast path of :meth:`submit` (no list, no loop)."""
        self.admit(1)
        batch = self._batch
        assert batch is not None, "shard not started"
        if self._dedup:
            batch.add_raw(lab_id, bucket, ts, temp, humidity)
        else:
            batch.add(lab_id, bucket, temp, humidity)
        self._wakeup.set()
        return batch.future

    async def _flush_forever(self) -> None:
        assert self._loop is not None
        while True:
            await self._wakeup.wait()
            # Let requests that arrive meanwhile join this flush: fewer, larger flushes
            # cost less CPU here and in Redis (docs/benchmarks.md). linger 0 still
            # yields one loop iteration.
            await asyncio.sleep(self._linger)
            self._wakeup.clear()
            batch = self._batch
            assert batch is not None
            if batch.observations:
                self._batch = Batch(self._loop)
                self._inflight = batch.observations
                await self._flush(batch)
                self._inflight = 0
                if self._batch.observations:
                    self._wakeup.set()
            elif self._closing:
                return

    async def _flush(self, batch: Batch) -> None:
        started = time.perf_counter()
        error: ShardError | None = None
        try:
            if not self.up:
                raise ShardUnavailable(self.name, "marked down")
            payload = batch.payload(self._expire_at, self._dedup)
            try:
                conn = await self._connection()
            except (RedisError, OSError, TimeoutError) as exc:
                metrics.SHARD_ERRORS.labels(shard=self.name, kind="connect").inc()
                self._mark_down(f"connect failed: {exc}")
                raise ShardUnavailable(self.name, "connection failed") from exc
            await self._evalsha(conn, payload)
        except ShardError as exc:
            error = exc
        except (TimeoutError, RedisError, OSError) as exc:
            kind = "response" if isinstance(exc, ResponseError) else (
                "timeout" if isinstance(exc, TimeoutError) else "connection")
            metrics.SHARD_ERRORS.labels(shard=self.name, kind=kind).inc()
            log.warning("shard %s: write outcome unknown (%s: %s)", self.name, kind, exc)
            await self._drop_connection()
            if not isinstance(exc, ResponseError):
                self._mark_down(f"{kind} during write")
            error = ShardOutcomeUnknown(self.name, f"{kind} after sending")
        except Exception as exc:  # never leave waiters hanging
            log.exception("shard %s: unexpected flush failure", self.name)
            await self._drop_connection()
            error = ShardOutcomeUnknown(self.name, f"internal error: {type(exc).__name__}")
        if not batch.future.done():
            if error is None:
                batch.future.set_result(None)
            else:
                batch.future.set_exception(error)
                # Waiters that handled the error have retrieved it; don't log it as lost.
                batch.future.exception()
        self._flush_time.observe(time.perf_counter() - started)
        self._flush_keys.observe(batch.keys)
        self._flush_obs.observe(batch.observations)

    async def _evalsha(self, conn: AbstractConnection, payload: bytes) -> None:
        command = self._write_command(payload)
        async with asyncio.timeout(self.settings.redis_timeout):
            await conn.send_packed_command(command, check_health=False)
            try:
                await conn.read_response()
            except NoScriptError:
                # NOSCRIPT: nothing ran, so loading the script and retrying is safe.
                await conn.send_command("SCRIPT", "LOAD", WRITE_SCRIPT)
                await conn.read_response()
                await conn.send_packed_command(command, check_health=False)
                await conn.read_response()
        self._last_used = time.monotonic()

    def _write_command(self, payload: bytes) -> list[bytes]:
        """EVALSHA in RESP, built from parts fixed at startup: only the payload varies,
        so the generic per-argument encoding of redis-py is skipped on the hot path."""
        return [self._command_head, b"$%d\r\n" % len(payload), payload, self._command_tail]

    async def _connection(self) -> AbstractConnection:
        """The flusher's own connection, checked after idling so a restarted Redis
        is noticed with a PING (safe to fail) rather than with a write."""
        conn = self._conn
        if conn is not None and conn.is_connected and _peer_closed(conn):
            # Redis closed it (restart, crash): we notice before sending anything.
            await self._drop_connection()
            conn = None
        if conn is not None and conn.is_connected:
            if time.monotonic() - self._last_used < IDLE_CHECK_SECONDS:
                return conn
            try:
                # Budget: this check plus the write stay within connect + command timeout.
                async with asyncio.timeout(self.settings.redis_connect_timeout):
                    await conn.send_command("PING")
                    await conn.read_response()
                self._last_used = time.monotonic()
                return conn
            except TimeoutError:
                # A stalled server: give up on it (nothing of ours was sent).
                await self._drop_connection()
                raise
            except (RedisError, OSError):
                await self._drop_connection()
        conn = self._conn = self._write_pool.make_connection()
        async with asyncio.timeout(self.settings.redis_connect_timeout):
            await conn.connect()
            await conn.send_command("SCRIPT", "LOAD", WRITE_SCRIPT)
            await conn.read_response()
        self._last_used = time.monotonic()
        return conn

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    # -- up/down state (circuit breaker) -------------------------------------------

    def _mark_down(self, why: str) -> None:
        if not self.up:
            return
        self.up = False
        self._up_gauge.set(0)
        log.warning("shard %s marked down: %s", self.name, why)
        self._on_state_change(self)
        if not self._closing and (self._prober is None or self._prober.done()):
            self._prober = asyncio.get_running_loop().create_task(
                self._probe_until_up(), name=f"probe-{self.name}"
            )

    def report_failure(self, why: str) -> None:
        """Reads call this when the shard fails them, so writes stop trying it too."""
        self._mark_down(why)

    async def _probe_until_up(self) -> None:
        """Half-open state: one PING per interval; the first success closes the breaker."""
        while not self._closing:
            await asyncio.sleep(self.settings.probe_interval)
            try:
                async with asyncio.timeout(self.settings.shard_deadline):
                    await self.reader.ping()
                    if await self._loading():
                        continue
                await self._drop_connection()
                self.up = True
                self._up_gauge.set(1)
                log.warning("shard %s is back up", self.name)
                self._on_state_change(self)
                return
            except (RedisError, OSError, TimeoutError):
                continue

    async def _loading(self) -> bool:
        """True while a restarted Redis still replays its AOF (it answers LOADING)."""
        info = await self.reader.info("persistence")
        return bool(info.get("loading", 0))
