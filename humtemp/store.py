"""All shards together: route writes through the ring, fan reads out and merge.

Routing policy when a lab's shard is down (``HUMTEMP_ON_SHARD_DOWN``):
``reroute`` sends the write to the next live shard on the ring, which is safe
because aggregates merge on read; ``reject`` answers 503. Only writes that
certainly never reached a shard are re-routed (see :mod:`humtemp.shard`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from humtemp import metrics
from humtemp.config import Settings, ShardSpec
from humtemp.guards import ShardGuards
from humtemp.model import Aggregate, Buckets
from humtemp.ring import ShardRing
from humtemp.shard import AGGREGATE, Shard, ShardUnavailable
from humtemp.tally import Tallies

log = logging.getLogger(__name__)

Item = tuple[str, int, int, float, float]
"""(lab_id, bucket_start, timestamp, temp, humidity), ready for a shard."""


@dataclass(slots=True)
class BucketRead:
    """A merged read of one bucket, and which shards could not be asked."""

    labs: dict[str, Aggregate] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return bool(self.missing)


class ShardSet:
    """The ring, the shards, and the write/read entry points the API uses."""

    def __init__(
        self, specs: Iterable[ShardSpec], settings: Settings, buckets: Buckets, tallies: Tallies
    ) -> None:
        self.settings = settings
        self.buckets = buckets
        self.shards: dict[str, Shard] = {
            spec.name: Shard(spec, settings, buckets.expire_at, self._state_changed, tallies)
            for spec in specs
        }
        self.ring = ShardRing(self.shards)
        self.guards = ShardGuards(self.shards.values(), settings.key_prefix)
        # Exactly-once dedup lives on the shard that took the first attempt; a retry
        # re-routed elsewhere would escape it, so exactly-once never re-routes.
        self.reroute = settings.on_shard_down == "reroute" and not settings.exactly_once

    async def start(self) -> None:
        """Connect, then check every shard (:mod:`humtemp.guards`): raises ConfigError,
        with everything closed, when two configured names reach one Redis."""
        await asyncio.gather(*(s.start() for s in self.shards.values()))
        try:
            await self.guards.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.guards.close()
        await asyncio.gather(*(s.close() for s in self.shards.values()))

    def refusals(self) -> dict[str, str]:
        """Shards out of service because a guard refused them, with the reason."""
        return self.guards.refusals()

    def resets_since(self, moment: float) -> list[str]:
        """Shards that lost their data at or after ``moment`` (see humtemp.guards)."""
        return self.guards.resets_since(moment)

    def _state_changed(self, shard: Shard) -> None:
        self.ring.set_down(name for name, s in self.shards.items() if not s.up)

    @property
    def live(self) -> list[str]:
        return [name for name, s in self.shards.items() if s.up]

    # -- writes ------------------------------------------------------------------

    def _target(self, lab_id: str) -> Shard:
        owner = self.ring.owner(lab_id)
        if owner not in self.ring.down:
            return self.shards[owner]
        if not self.reroute:
            raise ShardUnavailable(owner, "down (HUMTEMP_ON_SHARD_DOWN=reject)")
        target = self.ring.live_owner(lab_id)
        if target is None:
            raise ShardUnavailable(owner, "no live shard left")
        return self.shards[target]

    def owner_if_all_up(self, lab_id: str) -> Shard | None:
        """The lab's shard while every shard is up (nothing to re-route), else None."""
        if self.ring.down:
            return None
        return self.shards[self.ring.owner(lab_id)]

    async def write_one(self, item: Item) -> None:
        """Store one observation; returns once Redis acknowledged it."""
        for _ in range(len(self.shards)):
            owner = self.owner_if_all_up(item[0])  # every shard up: no re-route to count
            shard = owner if owner is not None else self._target(item[0])
            try:
                await shard.submit_one(*item)
            except ShardUnavailable:
                if not self.reroute:
                    raise
                continue  # nothing was sent: the ring now skips that shard
            if owner is None:
                self._count_reroute(item[0], shard.name, 1)
            return
        raise ShardUnavailable(self.ring.owner(item[0]), "no live shard accepted the write")

    async def write_many(self, items: list[Item]) -> None:
        """Store a batch; each shard's part goes in one flush, all shards in parallel."""
        pending = items
        for _ in range(len(self.shards)):
            by_shard: dict[str, list[Item]] = {}
            direct = not self.ring.down
            if direct:  # every shard up: each lab goes to its owner, nothing is re-routed
                owner = self.ring.owner
                for item in pending:
                    name = owner(item[0])
                    group = by_shard.get(name)
                    if group is None:
                        by_shard[name] = [item]
                    else:
                        group.append(item)
            else:
                for item in pending:
                    by_shard.setdefault(self._target(item[0]).name, []).append(item)
            names = list(by_shard)
            # Admit every part before queueing any: a full or down shard must not leave
            # the other parts of a batch stored behind a 503.
            for name in names:
                self.shards[name].admit(len(by_shard[name]))
            futures = [self.shards[n].submit(by_shard[n]) for n in names]
            results = await asyncio.gather(*futures, return_exceptions=True)
            pending = []
            for name, result in zip(names, results, strict=True):
                if result is None:
                    if not direct:
                        for item in by_shard[name]:
                            self._count_reroute(item[0], name, 1)
                    continue
                if isinstance(result, ShardUnavailable) and self.reroute:
                    pending.extend(by_shard[name])
                    continue
                raise result
            if not pending:
                return
        raise ShardUnavailable(self.ring.owner(pending[0][0]), "no live shard accepted the write")

    def _count_reroute(self, lab_id: str, stored_on: str, n: int) -> None:
        owner = self.ring.owner(lab_id)
        if owner != stored_on:
            metrics.SHARD_REROUTES.labels(shard=owner).inc(n)

    # -- reads -------------------------------------------------------------------

    async def read_bucket(self, bucket: int) -> BucketRead:
        """Every lab's aggregate in a bucket, merged over the shards that are up."""
        started = time.perf_counter()
        result = BucketRead()
        names = self.live
        result.missing = [n for n in self.shards if n not in names]
        replies = await asyncio.gather(
            *(self._guarded(self.shards[n].read_bucket(bucket)) for n in names),
            return_exceptions=True,
        )
        labs = result.labs
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                self._read_failed(name, reply, result)
                continue
            # All values unpacked in one C call over their concatenation.
            values = AGGREGATE.iter_unpack(b"".join(reply.values()))
            for raw_lab, (n, st, sh, tmin, tmax, hmin, hmax) in zip(reply, values, strict=True):
                agg = Aggregate(int(n), st, sh, tmin, tmax, hmin, hmax)
                lab = raw_lab.decode()
                have = labs.get(lab)
                labs[lab] = agg if have is None else have.merge(agg)
        metrics.SUMMARY_FANOUT.observe(time.perf_counter() - started)
        return result

    async def read_lab(self, bucket: int, lab_id: str) -> tuple[Aggregate | None, list[str]]:
        """One lab's aggregate, merged over every live shard (data may sit on several)."""
        names = self.live
        missing = [n for n in self.shards if n not in names]
        replies = await asyncio.gather(
            *(self._guarded(self.shards[n].read_lab(bucket, lab_id)) for n in names),
            return_exceptions=True,
        )
        total: Aggregate | None = None
        probe = BucketRead(missing=missing)
        for name, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                self._read_failed(name, reply, probe)
                continue
            if reply is not None:
                n, *rest = AGGREGATE.unpack(reply)
                agg = Aggregate(int(n), *rest)
                total = agg if total is None else total.merge(agg)
        return total, probe.missing

    async def _guarded(self, coro):  # type: ignore[no-untyped-def]
        async with asyncio.timeout(self.settings.shard_deadline):
            return await coro

    def _read_failed(self, name: str, exc: BaseException, result: BucketRead) -> None:
        if not isinstance(exc, RedisError | OSError | TimeoutError):
            raise exc
        kind = "timeout" if isinstance(exc, TimeoutError) else "read"
        metrics.SHARD_ERRORS.labels(shard=name, kind=kind).inc()
        log.warning("shard %s: read failed (%s)", name, exc)
        result.missing.append(name)
        if isinstance(exc, RedisConnectionError | OSError):
            self.shards[name].report_failure(f"read failed: {exc}")
