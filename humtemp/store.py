"""All shards together: route writes through the ring, fan reads out and merge.

Routing policy when a lab's shard is down (``HUMTEMP_ON_SHARD_DOWN``):
``reroute`` sends the write to the next live shard on the ring, which is safe
because aggregates merge on read; ``reject`` answers 503. Only writes that
certainly never reached a shard are re-routed (see :mod:`humtemp.shard`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from humtemp import metrics
from humtemp.config import Settings, ShardSpec
from humtemp.model import Buckets
from humtemp.ring import ShardRing
from humtemp.shard import Shard, ShardUnavailable
from humtemp.tally import Tallies

log = logging.getLogger(__name__)

Item = tuple[str, int, int, float, float]
"""(lab_id, bucket_start, timestamp, temp, humidity), ready for a shard."""


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
        # Exactly-once dedup lives on the shard that took the first attempt; a retry
        # re-routed elsewhere would escape it, so exactly-once never re-routes.
        self.reroute = settings.on_shard_down == "reroute" and not settings.exactly_once

    async def start(self) -> None:
        await asyncio.gather(*(s.start() for s in self.shards.values()))

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.shards.values()))

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
