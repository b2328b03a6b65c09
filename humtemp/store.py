"""All shards together: route writes through the ring, fan reads out and merge.

:meth:`ShardSet.write` is the one write entry point of both ingest routes.

Routing policy when a lab's shard is down (``HUMTEMP_ON_SHARD_DOWN``):
``reroute`` sends the write to the next live shard on the ring, which is safe
because aggregates merge on read; ``reject`` answers 503. Only writes that
certainly never reached a shard are re-routed (see :mod:`humtemp.shard`), and
never a write with an ``Idempotency-Key``: its owner may still apply it late, and
its record lives there.

A keyed write first stores the part of its *home* shard (the ring owner of the key
itself) together with the key's record, or the record alone; only then the other
shards' parts, each with its own record. A reused key with another body is caught
at home before anything is stored; a retry stores only the parts without a record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

from humtemp import metrics
from humtemp.config import Settings, ShardSpec
from humtemp.guards import ShardGuards
from humtemp.idempotency import IdempotencyKey
from humtemp.model import Buckets
from humtemp.outcomes import (
    KeyReused,
    ShardOutcomeUnknown,
    ShardOverloaded,
    ShardRefused,
    ShardUnavailable,
    StoreError,
    WriteFailed,
)
from humtemp.ring import ShardRing
from humtemp.shard import KEY_CONFLICT, MAX_LABS_PER_CALL, Batch, Shard
from humtemp.tally import Tallies

__all__ = [
    "KeyReused",
    "ShardOutcomeUnknown",
    "ShardOverloaded",
    "ShardRefused",
    "ShardSet",
    "ShardUnavailable",
    "StoreError",
    "WriteFailed",
]

log = logging.getLogger(__name__)

Item = tuple[str, int, int, float, float]
"""(lab_id, bucket_start, timestamp, temp, humidity), ready for a shard."""


def _chunks(items: list[Item]) -> list[list[Item]]:
    """Slices of at most MAX_LABS_PER_CALL items (so labs): one script call each."""
    return [items[i:i + MAX_LABS_PER_CALL] for i in range(0, len(items), MAX_LABS_PER_CALL)]


def _failure(errors: list[StoreError], stored: int, not_stored: int, unknown: int
             ) -> WriteFailed:
    cause = next((e for e in errors if not e.certain), errors[0])
    return WriteFailed(cause, stored, not_stored, unknown)


class ShardSet:
    """The ring, the shards, and the write/read entry points the API uses."""

    def __init__(
        self, specs: Iterable[ShardSpec], settings: Settings, buckets: Buckets, tallies: Tallies
    ) -> None:
        self.settings = settings
        self.buckets = buckets
        self.shards: dict[str, Shard] = {
            spec.name: Shard(spec, settings, buckets.expire_at, self._state_changed, tallies,
                             self._reroute_undelivered)
            for spec in specs
        }
        self.ring = ShardRing(self.shards)
        self.guards = ShardGuards(self.shards.values(), settings.key_prefix)
        # Exactly-once dedup lives on the shard that took the first attempt; a retry
        # re-routed elsewhere would escape it, so exactly-once never re-routes.
        self.reroute = settings.on_shard_down == "reroute" and not settings.exactly_once
        self._settling: set[asyncio.Task[None]] = set()

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

    def states(self) -> dict[str, str]:
        """Each shard's state for /readyz: ``up`` or ``down``."""
        return {name: ("up" if s.up else "down") for name, s in self.shards.items()}

    # -- writes ------------------------------------------------------------------

    def write(self, items: list[Item], key: IdempotencyKey | None = None) -> Awaitable[None]:
        """Store ``items``; what it returns resolves once Redis stored them, or raises a
        :class:`StoreError` (nothing stored, or one unknown item), :class:`WriteFailed`
        (some stored, with the counts) or :class:`KeyReused` (nothing stored).

        One unkeyed item while every shard is up returns its owner's batch future
        itself: no coroutine of ours per request (measured: docs/benchmarks.md,
        1.057x req/s for the single post)."""
        if key is None and len(items) == 1 and not self.ring.down:
            item = items[0]
            return self.shards[self.ring.owner(item[0])].submit_one(*item)
        if key is not None:
            return self._write_keyed(items, key)
        return self._write_unkeyed(items)

    def _target(self, lab_id: str) -> Shard:
        owner = self.ring.owner(lab_id)
        if owner not in self.ring.down:
            return self.shards[owner]
        if not self.reroute:
            raise ShardUnavailable(owner, "storage shard unavailable")
        target = self.ring.live_owner(lab_id)
        if target is None:
            raise ShardUnavailable(owner, "no storage shard is available")
        return self.shards[target]

    async def _write_unkeyed(self, items: list[Item]) -> None:
        parts: dict[str, list[Item]] = {}
        owner = self.ring.owner
        direct = not self.ring.down
        for item in items:
            name = owner(item[0]) if direct else self._target(item[0]).name
            part = parts.get(name)
            if part is None:
                parts[name] = [item]
            else:
                part.append(item)
        # Admit every part before queueing any: a full or down shard must not leave
        # the other parts of a batch stored behind a 503.
        for name, part in parts.items():
            self.shards[name].admit(len(part))
        sent = [(name, chunk) for name, part in parts.items() for chunk in _chunks(part)]
        results = await asyncio.gather(
            *(self.shards[name].submit(chunk) for name, chunk in sent), return_exceptions=True)
        stored = not_stored = unknown = 0
        errors: list[StoreError] = []
        for (name, chunk), result in zip(sent, results, strict=True):
            if result is None:
                stored += len(chunk)
                if not direct:
                    for item in chunk:
                        self._count_reroute(item[0], name, 1)
                continue
            if not isinstance(result, StoreError):
                raise result
            errors.append(result)
            if result.certain:
                not_stored += len(chunk)
            else:
                unknown += len(chunk)
        if errors:
            if len(items) == 1:
                raise errors[0]
            raise _failure(errors, stored, not_stored, unknown)

    async def _write_keyed(self, items: list[Item], key: IdempotencyKey) -> None:
        owner = self.ring.owner
        parts: dict[str, list[Item]] = {}
        for item in items:
            parts.setdefault(owner(item[0]), []).append(item)
        home = owner(key.key)
        for name in {home, *parts}:
            if name in self.ring.down:
                # Never re-routed: a part sent earlier may still land on its owner.
                raise ShardUnavailable(name, "storage shard unavailable; a write with an "
                                       "Idempotency-Key waits for its own shard")
        for name, part in parts.items():
            self.shards[name].admit(len(part))
        sent: list[tuple[str, str, list[Item]]] = []
        for name, part in parts.items():
            for i, chunk in enumerate(_chunks(part)):
                sent.append((name, key.key if i == 0 else f"{key.key}#{i}", chunk))
        # The home shard's part (or the key alone) first: a reused key stops there.
        first = next((s for s in sent if s[0] == home and s[1] == key.key), (home, key.key, []))
        rest = [s for s in sent if s is not first]
        total = len(items)
        try:
            status = await self.shards[home].submit_keyed(first[1], key.fingerprint, first[2])
        except StoreError as exc:
            if total == len(first[2]) or exc.certain:
                raise
            raise _failure([exc], 0, total - len(first[2]), len(first[2])) from None
        if status == KEY_CONFLICT:
            raise KeyReused(key.key)
        results = await asyncio.gather(
            *(self.shards[name].submit_keyed(record, key.fingerprint, chunk)
              for name, record, chunk in rest),
            return_exceptions=True)
        stored, not_stored, unknown = len(first[2]), 0, 0
        errors: list[StoreError] = []
        for (_, _, chunk), result in zip(rest, results, strict=True):
            if isinstance(result, StoreError):
                errors.append(result)
                if result.certain:
                    not_stored += len(chunk)
                else:
                    unknown += len(chunk)
            elif isinstance(result, BaseException):
                raise result
            elif result == KEY_CONFLICT:
                # The home record expired or was lost while this shard's stayed.
                raise KeyReused(key.key)
            else:
                stored += len(chunk)
        if errors:
            raise _failure(errors, stored, not_stored, unknown)

    def _reroute_undelivered(self, shard: Shard, batch: Batch, error: StoreError) -> bool:
        """Send the unkeyed observations of a flush that never reached ``shard`` to the
        next live shards; True if they took them (the batch's waiters then wait on them)."""
        if not self.reroute:
            return False
        by_target: dict[str, dict[int, dict[str, list[float]]]] = {}
        try:
            for bucket, labs in batch.groups.items():
                for lab_id, agg in labs.items():
                    target = self._target(lab_id).name
                    by_target.setdefault(target, {}).setdefault(bucket, {})[lab_id] = agg
            for name, groups in by_target.items():
                self.shards[name].admit(
                    sum(int(agg[0]) for labs in groups.values() for agg in labs.values()))
        except StoreError:
            return False
        futures = []
        for name, groups in by_target.items():
            futures.append(self.shards[name].submit_merged(groups))
            for labs in groups.values():
                for lab_id, agg in labs.items():
                    self._count_reroute(lab_id, name, int(agg[0]))
        task = asyncio.get_running_loop().create_task(self._settle(batch.future, futures))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        return True

    @staticmethod
    async def _settle(waiters: asyncio.Future[None], futures: list[asyncio.Future[None]]
                      ) -> None:
        results = await asyncio.gather(*futures, return_exceptions=True)
        if waiters.done():
            return
        errors = [r for r in results if isinstance(r, BaseException)]
        if not errors:
            waiters.set_result(None)
        else:
            waiters.set_exception(next((e for e in errors if isinstance(e, ShardOutcomeUnknown)),
                                       errors[0]))
            waiters.exception()

    def _count_reroute(self, lab_id: str, stored_on: str, n: int) -> None:
        owner = self.ring.owner(lab_id)
        if owner != stored_on:
            metrics.SHARD_REROUTES.labels(shard=owner).inc(n)
