"""Shard guards: each shard's identity record, its eviction policy, and lost data.

Aggregates are merged over every shard, so a Redis reached under two names counts
twice, an evicting Redis silently drops whole buckets, and a Redis that came back
empty silently lowers every total. None of that raises an error anywhere else:
this module looks for it at start, on every probe of a down shard, after a
reconnect and every :data:`CHECK_INTERVAL` seconds on each shard's reader.

The identity record is a small hash ``<prefix>shard`` (``name``, ``id``,
``created``, and ``reset`` once a reset was seen) that humtemp writes on a shard
the first time it sees it empty. Its ``id`` is the same for every humtemp process
that ever saw the shard, so two configured names whose records carry one id are
one Redis database, and a record that vanished means the shard lost its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from redis.exceptions import RedisError, ResponseError

from humtemp import layout, metrics
from humtemp.config import ConfigError
from humtemp.shard import Shard

log = logging.getLogger(__name__)

CHECK_INTERVAL = 1.0
"""Seconds between two checks of a live shard: a wiped shard is counted within ~1 s."""
ALLOWED_POLICY = "noeviction"
ALIAS_SETTING = "HUMTEMP_REDIS_URLS"

CREATE_IF_ABSENT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'name', ARGV[1], 'id', ARGV[2], 'created', ARGV[3])
  if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'reset', ARGV[4]) end
end
return redis.call('HGETALL', KEYS[1])
"""
"""Atomic, so two processes (or two names of one Redis) that find the shard empty at
the same moment end up reading the same record: the one that wrote first."""


@dataclass(frozen=True, slots=True)
class Identity:
    """A shard's identity record as stored."""

    name: str
    id: str
    created: float
    reset: float | None

    @classmethod
    def parse(cls, raw: dict[bytes, bytes] | list[bytes]) -> Identity | None:
        if isinstance(raw, list):  # HGETALL through EVAL: a flat field/value list
            raw = dict(zip(raw[::2], raw[1::2], strict=True))
        if not raw:
            return None
        fields = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        try:
            created = float(fields.get("created", "0"))
            reset = float(fields["reset"]) if "reset" in fields else None
        except ValueError:
            created, reset = 0.0, None
        return cls(fields.get("name", ""), fields.get("id", ""), created, reset)


@dataclass(frozen=True, slots=True)
class Memory:
    """What INFO memory says about eviction: the policy and how full the shard is."""

    policy: str
    used: int
    limit: int

    @property
    def used_ratio(self) -> float | None:
        return self.used / self.limit if self.limit > 0 else None


class ShardGuard:
    """One shard's checks, and what they last found."""

    def __init__(self, shard: Shard, key_prefix: str) -> None:
        self.shard = shard
        self.key = layout.identity_key(key_prefix.encode()).decode()
        self.known: Identity | None = None
        """This shard's record as last seen: a record that vanishes after it was seen
        means the shard lost its data."""
        self.seen: Identity | None = None
        """Whatever record the shard holds, even another shard's."""
        self.refusal: str | None = None
        self._unrecorded_warned = False
        self._resets = metrics.SHARD_RESETS.labels(shard=shard.name)
        self._memory_ratio = metrics.SHARD_MEMORY_RATIO.labels(shard=shard.name)

    async def read(self) -> tuple[Identity | None, Memory]:
        """The record and the memory facts, in one round trip on the reader."""
        async with self.shard.reader.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key)
            pipe.info("memory")
            raw, info = await pipe.execute(raise_on_error=False)
        if isinstance(raw, Exception):
            raise raw
        if isinstance(info, Exception):  # INFO disabled (some managed Redis): nothing to judge
            info = {}
        memory = Memory(str(info.get("maxmemory_policy", "")), int(info.get("used_memory", 0)),
                        int(info.get("maxmemory", 0)))
        return Identity.parse(raw), memory

    async def create(self, template: Identity | None, reset_at: float | None) -> Identity:
        """Write the record unless someone else just did; the stored one either way."""
        record_id = template.id if template else uuid.uuid4().hex
        created = f"{time.time():.3f}"
        reset = f"{reset_at:.3f}" if reset_at is not None else ""
        raw = await self.shard.reader.eval(  # type: ignore[misc]
            CREATE_IF_ABSENT, 1, self.key, self.shard.name, record_id, created, reset)
        stored = Identity.parse(raw)
        assert stored is not None
        return stored

    async def check(self) -> str | None:
        """Run every check; why the shard must stay out of service, or None."""
        found, memory = await self.read()
        self._memory_ratio.set(memory.used_ratio or 0.0)
        if found is None:
            reset_at = time.time() if self.known is not None else None
            if reset_at is not None:
                self._count_reset(f"its identity record {self.key} vanished")
            try:
                found = await self.create(self.known, reset_at)
            except ResponseError as exc:
                if "OOM" not in str(exc):
                    raise
                # A full shard cannot take its record, nor any write (they are answered
                # storage_full); its data is still readable, so it stays in service and
                # the record is written by the first check after memory is freed.
                self._warn_unrecorded(str(exc))
                return None
        elif self.known is not None and found.id != self.known.id and found.name == self.shard.name:
            self._count_reset(f"its identity record was re-created by another humtemp "
                              f"(id {self.known.id} -> {found.id})")
            if found.reset is None:  # that humtemp never saw the old record: date the reset
                await self.shard.reader.hsetnx(self.key, "reset", f"{time.time():.3f}")
                found = Identity.parse(await self.shard.reader.hgetall(self.key)) or found
        self.seen = found
        if found.name == self.shard.name:
            self.known = found
        self._unrecorded_warned = False
        if found.name != self.shard.name:
            return (f"its identity record {self.key} names shard {found.name!r} (id {found.id}): "
                    f"it is another shard's Redis")
        if memory.policy and memory.policy != ALLOWED_POLICY:
            return (f"maxmemory-policy is {memory.policy!r}: it may evict aggregates; "
                    f"set it to {ALLOWED_POLICY}")
        return None

    def _warn_unrecorded(self, why: str) -> None:
        if not self._unrecorded_warned:
            log.warning("shard %s: its identity record cannot be written (%s); it stays in "
                        "service unverified until memory is freed", self.shard.name, why)
        self._unrecorded_warned = True

    def _count_reset(self, why: str) -> None:
        self._resets.inc()
        log.error("shard %s was reset and lost its data: %s; counting it in "
                  "humtemp_shard_resets_total and carrying on", self.shard.name, why)

    def reset_at(self) -> float | None:
        """When the shard was last reset, as its record says (any humtemp may have seen it)."""
        return self.known.reset if self.known else None

    def enforce(self, refusal: str | None) -> bool:
        """Take a refused shard out of service, logging a change of verdict once;
        True if the shard may serve."""
        if refusal != self.refusal:
            if refusal is not None:
                log.error("shard %s refused, out of service: %s", self.shard.name, refusal)
            else:
                log.warning("shard %s passes its guards again", self.shard.name)
        self.refusal = refusal
        if refusal is not None:
            self.shard.refuse(refusal)
        return refusal is None


class ShardGuards:
    """Every shard's guard, the start-time alias check and the periodic check."""

    def __init__(self, shards: Iterable[Shard], key_prefix: str) -> None:
        self.guards = {shard.name: ShardGuard(shard, key_prefix) for shard in shards}
        self._nudge = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        for guard in self.guards.values():
            guard.shard.vet = self._vet_hook(guard)
            guard.shard.on_reconnect = self._nudge.set

    def _vet_hook(self, guard: ShardGuard) -> Callable[[], Awaitable[bool]]:
        async def vet() -> bool:
            return guard.enforce(await guard.check())
        return vet

    async def start(self) -> None:
        """Check every reachable shard; raise :class:`ConfigError` on two names of one
        Redis, take refused shards out of service, then check periodically."""
        live = [g for g in self.guards.values() if g.shard.up]
        verdicts = await asyncio.gather(*(g.check() for g in live), return_exceptions=True)
        self._refuse_aliases(live)
        for guard, verdict in zip(live, verdicts, strict=True):
            if isinstance(verdict, BaseException):
                if not isinstance(verdict, RedisError | OSError | TimeoutError):
                    raise verdict
                guard.shard.report_failure(f"guard check failed: {verdict}")
            else:
                guard.enforce(verdict)
        self._task = asyncio.get_running_loop().create_task(self._check_forever(),
                                                             name="shard-guards")

    def _refuse_aliases(self, guards: list[ShardGuard]) -> None:
        """Two configured names that read one record (same id) reach one Redis database.
        When both first met it empty, the second found the first's record: same case."""
        by_id: dict[str, list[str]] = {}
        for guard in guards:
            if guard.seen is not None:
                by_id.setdefault(guard.seen.id, []).append(guard.shard.name)
        for record_id, names in by_id.items():
            if len(names) > 1:
                raise ConfigError(ALIAS_SETTING, f"shards {' and '.join(sorted(names))} are one "
                                  f"Redis database (identity record id {record_id}): configure "
                                  f"it once")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _check_forever(self) -> None:
        """Every live shard, every interval or right after a reconnect. Down shards are
        checked by their prober before they come back (:meth:`Shard.vet`)."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CHECK_INTERVAL):
                    await self._nudge.wait()
            self._nudge.clear()
            live = [g for g in self.guards.values() if g.shard.up]
            await asyncio.gather(*(self._check_live(g) for g in live))

    async def _check_live(self, guard: ShardGuard) -> None:
        try:
            async with asyncio.timeout(guard.shard.settings.shard_deadline):
                refusal = await guard.check()
        except (RedisError, OSError, TimeoutError):
            return  # reads and writes notice an unreachable shard on their own
        guard.enforce(refusal)

    def refusals(self) -> dict[str, str]:
        """Why each refused shard is out of service, by shard name."""
        return {name: g.refusal for name, g in self.guards.items() if g.refusal is not None}

    def resets_since(self, moment: float) -> list[str]:
        """Shards reset at or after ``moment`` (e.g. a bucket's start): their part of
        any bucket that existed by then is lost."""
        return sorted(name for name, guard in self.guards.items()
                      if (at := guard.reset_at()) is not None and at >= moment)
