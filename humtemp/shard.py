"""One Redis shard: its group-commit writer and its circuit breaker (reads: reader.py).

Write path: ``submit_one``/``submit`` merge observations into the open batch and
return the batch's future; ``submit_keyed`` adds a keyed part with a future of its
own. One flusher task per shard owns one connection and sends each batch as ONE
``EVALSHA`` call; everything that arrived while a flush was in flight forms the next
batch (a batch that reaches :data:`MAX_LABS_PER_CALL` labs is closed early). A request
is answered only when its future resolved, i.e. after Redis replied: acknowledged
means stored.

Failure handling (:mod:`humtemp.outcomes`): an error while *connecting* means nothing
was sent, so the batch's unkeyed observations are handed to ``on_undelivered`` (the
shard set re-routes them, see :mod:`humtemp.store`). An error reply is a certain
refusal (:class:`ShardRefused`). A timeout or broken connection after sending leaves
the outcome unknown (:class:`ShardOutcomeUnknown`): the write may still be applied, so
it is never re-routed (it would count twice); the client gets a 503 and may retry
safely with its ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
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
from humtemp.deadline import ShardDeadline
from humtemp.outcomes import (
    ShardOutcomeUnknown,
    ShardOverloaded,
    ShardUnavailable,
    StoreError,
    refusal,
)
from humtemp.tally import Tallies

log = logging.getLogger(__name__)

WRITE_SCRIPT = resources.files("humtemp").joinpath("lua/write.lua").read_text()
_pack = msgspec.msgpack.Encoder().encode
IDLE_CHECK_SECONDS = 1.0


def _script_sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()


WRITE_SHA = _script_sha(WRITE_SCRIPT)
MAX_LABS_PER_CALL = 2000
"""Labs one script call merges at most: a full batch is closed and the next one opened.
At ~2 µs of Redis CPU per merged lab (docs/benchmarks.md) that keeps a call well under
the 20 ms that would hold up every other client of the shard."""
REFUSAL_LOG_SECONDS = 5.0
STORED, STORED_BEFORE, KEY_CONFLICT = 1, 0, -1
"""What write.lua answers for each keyed part."""


def _peer_closed(conn: AbstractConnection) -> bool:
    """True if the server already closed this connection (EOF seen by the event loop)."""
    reader = getattr(conn, "_reader", None)
    return reader is not None and reader.at_eof()


async def _always_fit() -> bool:
    return True


def _nothing() -> None:
    pass


class Groups:
    """Observations merged per (bucket, lab) as they arrive, in write.lua's row order."""

    __slots__ = ("groups", "labs", "observations")

    def __init__(self) -> None:
        self.groups: dict[int, dict[str, Any]] = {}
        self.labs = 0
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
            self.labs += 1
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
        if lab_id not in labs:
            labs[lab_id] = []
            self.labs += 1
        labs[lab_id].extend((ts, temp, humidity))
        self.observations += 1

    def add_items(self, items: list[tuple[str, int, int, float, float]], dedup: bool) -> None:
        """Add (lab_id, bucket, ts, temp, humidity) items: each reading kept in
        exactly-once mode (``dedup``), merged per lab otherwise."""
        if dedup:
            add_raw = self.add_raw
            for item in items:
                add_raw(*item)
        else:
            add = self.add
            for lab_id, bucket, _ts, temp, hum in items:
                add(lab_id, bucket, temp, hum)

    def add_merged(self, lab_id: str, bucket: int, agg: list[Any]) -> None:
        """Merge an aggregate built elsewhere (a re-routed flush) into this one."""
        labs = self.groups.setdefault(bucket, {})
        have = labs.get(lab_id)
        if have is None:
            labs[lab_id] = list(agg)
            self.labs += 1
        else:
            have[0] += agg[0]
            have[1] += agg[1]
            have[2] += agg[2]
            have[3] = min(have[3], agg[3])
            have[4] = max(have[4], agg[4])
            have[5] = min(have[5], agg[5])
            have[6] = max(have[6], agg[6])
        self.observations += int(agg[0])

    def rows(self, expire_at: Callable[[int], int], dedup: bool) -> list[Any]:
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
        return groups


class KeyedPart(Groups):
    """One shard's part of a write sent with an Idempotency-Key: stored only if the
    shard has no record under ``record`` yet, in the same script call as the record."""

    __slots__ = ("fingerprint", "future", "record")

    def __init__(self, record: str, fingerprint: str, future: asyncio.Future[int]) -> None:
        super().__init__()
        self.record = record
        self.fingerprint = fingerprint
        self.future = future


class Batch(Groups):
    """Everything one flush sends: the merged unkeyed observations (their waiters share
    ``future``) and the keyed parts (each with its own future)."""

    __slots__ = ("future", "keyed", "keyed_labs", "keyed_observations")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.future: asyncio.Future[None] = loop.create_future()
        self.keyed: list[KeyedPart] = []
        self.keyed_labs = 0
        self.keyed_observations = 0

    @property
    def size(self) -> int:
        """Observations carried, keyed parts included."""
        return self.observations + self.keyed_observations

    @property
    def empty(self) -> bool:
        """Nothing to send (a keyed part without observations still claims its key)."""
        return not self.observations and not self.keyed

    def payload(self, expire_at: Callable[[int], int], dedup: bool, ttl: int) -> bytes:
        if not self.keyed:
            return _pack((self.rows(expire_at, dedup), ()))
        keyed = [(p.record, p.fingerprint, ttl, p.rows(expire_at, dedup)) for p in self.keyed]
        return _pack((self.rows(expire_at, dedup), keyed))

    def settle(self, reply: int | list[int] | None, error: StoreError | None,
               unkeyed: bool = True) -> None:
        """Resolve every waiter with the script's reply (a count, or with keyed parts a
        list: the count, then each part's status), or with ``error``; the unkeyed waiters
        only if ``unkeyed`` (else their observations were handed elsewhere)."""
        if error is None:
            if not self.future.done():
                self.future.set_result(None)
            if not self.keyed:
                return
            assert isinstance(reply, list)
            for part, status in zip(self.keyed, reply[1:], strict=True):
                if not part.future.done():
                    part.future.set_result(status)
            return
        futures = [p.future for p in self.keyed]
        if unkeyed:
            futures.append(self.future)
        for future in futures:
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: waiters that went away are not "lost"


class Shard:
    """A shard's connection, write queue and up/down state."""

    def __init__(
        self,
        spec: ShardSpec,
        settings: Settings,
        expire_at: Callable[[int], int],
        on_state_change: Callable[[Shard], None],
        tallies: Tallies,
        on_undelivered: Callable[[Shard, Batch, StoreError], bool] | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.settings = settings
        self._expire_at = expire_at
        self._on_state_change = on_state_change
        self._on_undelivered = on_undelivered
        self._key_ttl = settings.idempotency_ttl
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
        self._full: collections.deque[Batch] = collections.deque()
        self._queued = 0  # observations in the open and the full batches
        self._inflight = 0  # observations in the flush under way
        self._max_pending = settings.max_pending
        self._refusal_logged_at = float("-inf")
        self._refusals_unlogged = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._flusher: asyncio.Task[None] | None = None
        self._prober: asyncio.Task[None] | None = None
        self._up_gauge = metrics.SHARD_UP.labels(shard=self.name)
        pending_gauge = metrics.SHARD_PENDING.labels(shard=self.name)
        tallies.sample(lambda: pending_gauge.set(self.pending))
        self._flush_time = tallies.histogram(metrics.SHARD_FLUSH_DURATION.labels(shard=self.name))
        self._flush_keys = tallies.histogram(metrics.SHARD_FLUSH_KEYS.labels(shard=self.name))
        self._flush_obs = tallies.histogram(
            metrics.SHARD_FLUSH_OBSERVATIONS.labels(shard=self.name))
        self._up_gauge.set(1)
        self.vet: Callable[[], Awaitable[bool]] = _always_fit
        """Run by the prober before the shard comes back: may it serve? (humtemp.guards)"""
        self.on_reconnect: Callable[[], None] = _nothing
        """Called when the flusher opens a new connection (humtemp.guards checks the shard)."""

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
        return self._queued + self._inflight

    def admit(self, count: int) -> None:
        """Raise unless ``count`` more observations may be queued here right now."""
        if not self.up:
            raise ShardUnavailable(self.name, "marked down")
        if self._queued + self._inflight + count > self._max_pending:
            metrics.SHARD_ERRORS.labels(shard=self.name, kind="overloaded").inc()
            raise ShardOverloaded(self.name, "write queue full")

    def _open_batch(self, labs: int) -> Batch:
        """The batch to add ``labs`` more labs to: the open one, unless that would take
        a script call past :data:`MAX_LABS_PER_CALL` labs (then it is closed)."""
        batch = self._batch
        assert batch is not None, "shard not started"
        if batch.labs + batch.keyed_labs + labs > MAX_LABS_PER_CALL and not batch.empty:
            assert self._loop is not None
            self._full.append(batch)
            batch = self._batch = Batch(self._loop)
        return batch

    def submit_one(
        self, lab_id: str, bucket: int, ts: int, temp: float, humidity: float
    ) -> asyncio.Future[None]:
        """Queue one observation; the future resolves when it is stored."""
        if not self.up or self._queued + self._inflight >= self._max_pending:
            self.admit(1)  # raises
        self._queued += 1
        batch = self._batch
        assert batch is not None, "shard not started"
        if batch.labs >= MAX_LABS_PER_CALL:
            batch = self._open_batch(1)
        if self._dedup:
            batch.add_raw(lab_id, bucket, ts, temp, humidity)
        else:
            batch.add(lab_id, bucket, temp, humidity)
        self._wakeup.set()
        return batch.future

    def submit(self, items: list[tuple[str, int, int, float, float]]) -> asyncio.Future[None]:
        """Queue (lab_id, bucket, ts, temp, humidity) items; the future resolves when stored.
        The caller keeps ``items`` within :data:`MAX_LABS_PER_CALL` labs."""
        self.admit(len(items))
        self._queued += len(items)
        batch = self._open_batch(len(items))
        batch.add_items(items, self._dedup)
        self._wakeup.set()
        return batch.future

    def submit_merged(self, groups: dict[int, dict[str, Any]]) -> asyncio.Future[None]:
        """Queue aggregates another shard could not deliver (nothing of them was sent)."""
        count = sum(int(agg[0]) for labs in groups.values() for agg in labs.values())
        self.admit(count)
        self._queued += count
        batch = self._open_batch(sum(len(labs) for labs in groups.values()))
        for bucket, labs in groups.items():
            for lab_id, agg in labs.items():
                batch.add_merged(lab_id, bucket, agg)
        self._wakeup.set()
        return batch.future

    def submit_keyed(
        self, record: str, fingerprint: str, items: list[tuple[str, int, int, float, float]]
    ) -> asyncio.Future[int]:
        """Queue a keyed part (possibly empty: a claim of the key alone). The future
        resolves to :data:`STORED`, :data:`STORED_BEFORE` or :data:`KEY_CONFLICT`."""
        self.admit(len(items))
        self._queued += len(items)
        assert self._loop is not None, "shard not started"
        part = KeyedPart(record, fingerprint, self._loop.create_future())
        part.add_items(items, self._dedup)
        batch = self._open_batch(part.labs)
        batch.keyed.append(part)
        batch.keyed_labs += part.labs
        batch.keyed_observations += part.observations
        self._wakeup.set()
        return part.future

    def _next_batch(self) -> Batch | None:
        if self._full:
            batch = self._full.popleft()
        else:
            batch = self._batch
            assert batch is not None and self._loop is not None
            if batch.empty:
                return None
            self._batch = Batch(self._loop)
        self._queued -= batch.size
        return batch

    async def _flush_forever(self) -> None:
        assert self._loop is not None
        while True:
            await self._wakeup.wait()
            # Let requests that arrive meanwhile join this flush: fewer, larger flushes
            # cost less CPU here and in Redis (docs/benchmarks.md). linger 0 still
            # yields one loop iteration.
            await asyncio.sleep(self._linger)
            self._wakeup.clear()
            batch = self._next_batch()
            if batch is not None:
                self._inflight = batch.size
                await self._flush(batch)
                self._inflight = 0
                if self._full or not self._batch.empty:  # type: ignore[union-attr]
                    self._wakeup.set()
            elif self._closing:
                return

    async def _flush(self, batch: Batch) -> None:
        started = time.perf_counter()
        error: StoreError | None = None
        reply: int | list[int] | None = None
        try:
            if not self.up:
                raise ShardUnavailable(self.name, "marked down")
            payload = batch.payload(self._expire_at, self._dedup, self._key_ttl)
            try:
                conn = await self._connection()
            except (RedisError, OSError, TimeoutError) as exc:
                metrics.SHARD_ERRORS.labels(shard=self.name, kind="connect").inc()
                self._mark_down(f"connect failed: {exc}")
                raise ShardUnavailable(self.name, "connection failed") from exc
            reply = await self._evalsha(conn, payload)
        except StoreError as exc:
            error = exc
        except ResponseError as exc:
            # An error reply: the script stored nothing (write.lua reads before it writes).
            error = refusal(self.name, str(exc))
            metrics.SHARD_ERRORS.labels(shard=self.name, kind=error.kind).inc()
            self._warn_refused(str(exc))
        except (TimeoutError, RedisError, OSError) as exc:
            kind = "timeout" if isinstance(exc, TimeoutError) else "connection"
            metrics.SHARD_ERRORS.labels(shard=self.name, kind=kind).inc()
            log.warning("shard %s: write outcome unknown (%s: %s)", self.name, kind, exc)
            await self._drop_connection()
            self._mark_down(f"{kind} during write")
            error = ShardOutcomeUnknown(
                self.name, "storage did not confirm the write in time; "
                "it may or may not be stored")
        except Exception as exc:  # never leave waiters hanging
            log.exception("shard %s: unexpected flush failure", self.name)
            await self._drop_connection()
            error = ShardOutcomeUnknown(self.name, f"internal error: {type(exc).__name__}")
        rerouted = (isinstance(error, ShardUnavailable) and batch.observations > 0
                    and self._on_undelivered is not None
                    and self._on_undelivered(self, batch, error))
        batch.settle(reply, error, unkeyed=not rerouted)
        self._flush_time.observe(time.perf_counter() - started)
        self._flush_keys.observe(batch.labs + batch.keyed_labs)
        self._flush_obs.observe(batch.size)

    def _warn_refused(self, reply: str) -> None:
        """One WARNING per shard per :data:`REFUSAL_LOG_SECONDS`: a full shard refuses
        every flush, and at thousands of flushes a second one line each would flood the
        log (the count per kind is in humtemp_shard_errors_total)."""
        now = time.monotonic()
        self._refusals_unlogged += 1
        if now - self._refusal_logged_at < REFUSAL_LOG_SECONDS:
            return
        log.warning("shard %s: write refused (%s); %d refused flush(es) since the last line",
                    self.name, reply, self._refusals_unlogged)
        self._refusal_logged_at = now
        self._refusals_unlogged = 0

    async def _evalsha(self, conn: AbstractConnection, payload: bytes) -> int | list[int]:
        command = self._write_command(payload)
        # Every shard deadline here is a ShardDeadline: a stall of our own loop is not the
        # shard's fault (deadline.py).
        with ShardDeadline(self.settings.redis_timeout):
            await conn.send_packed_command(command, check_health=False)
            try:
                reply = await conn.read_response()
            except NoScriptError:
                # NOSCRIPT: nothing ran, so loading the script and retrying is safe.
                await conn.send_command("SCRIPT", "LOAD", WRITE_SCRIPT)
                await conn.read_response()
                await conn.send_packed_command(command, check_health=False)
                reply = await conn.read_response()
        self._last_used = time.monotonic()
        return reply  # type: ignore[no-any-return]

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
                with ShardDeadline(self.settings.redis_connect_timeout):
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
        if self._last_used:
            self.on_reconnect()
        conn = self._conn = self._write_pool.make_connection()
        with ShardDeadline(self.settings.redis_connect_timeout):
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

    def refuse(self, why: str) -> None:
        """Out of service until a probe finds it fit again (:attr:`vet`)."""
        self._mark_down(f"refused: {why}")

    def report_failure(self, why: str) -> None:
        """Reads call this when the shard fails them, so writes stop trying it too."""
        self._mark_down(why)

    async def _probe_until_up(self) -> None:
        """Half-open state: one PING per interval; the first success closes the breaker."""
        while not self._closing:
            await asyncio.sleep(self.settings.probe_interval)
            try:
                with ShardDeadline(self.settings.shard_deadline):
                    await self.reader.ping()
                    if await self._loading() or not await self.vet():
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
