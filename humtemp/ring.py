"""Which shard owns a lab: a ketama consistent-hash ring over shard *names*.

Hashing names (not addresses) means a shard can move to a new address without
moving a single lab. Lookups are cached: the same few thousand labs push all day.
"""

from __future__ import annotations

from collections.abc import Iterable

from uhashring import HashRing

_CACHE_LIMIT = 1 << 20


class ShardRing:
    """Maps lab ids to shard names; knows which shards are live for re-routing."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names: tuple[str, ...] = tuple(names)
        if not self.names:
            raise ValueError("a ring needs at least one shard")
        self._ring = HashRing(nodes=list(self.names), hash_fn="ketama")
        self._owner_cache: dict[str, str] = {}
        self._down: frozenset[str] = frozenset()
        self._live_ring: HashRing | None = None
        self._live_cache: dict[str, str] = {}

    def owner(self, lab_id: str) -> str:
        """The shard a lab's writes go to while every shard is up."""
        try:
            return self._owner_cache[lab_id]
        except KeyError:
            if len(self._owner_cache) >= _CACHE_LIMIT:
                self._owner_cache.clear()
            name = self._owner_cache[lab_id] = self._ring.get_node(lab_id)
            return name

    def set_down(self, down: Iterable[str]) -> None:
        """Record which shards are down; re-routing then uses a ring of the others."""
        down_set = frozenset(down)
        if down_set == self._down:
            return
        self._down = down_set
        self._live_cache = {}
        live = [n for n in self.names if n not in down_set]
        self._live_ring = HashRing(nodes=live, hash_fn="ketama") if live else None

    @property
    def down(self) -> frozenset[str]:
        return self._down

    def live_owner(self, lab_id: str) -> str | None:
        """The next live shard clockwise from the lab's owner, or None if all are down.

        A ring without the down shards maps exactly the down shards' labs elsewhere,
        each to the next live shard on the ring; every other lab keeps its owner.
        """
        owner = self.owner(lab_id)
        if owner not in self._down:
            return owner
        if self._live_ring is None:
            return None
        try:
            return self._live_cache[lab_id]
        except KeyError:
            name = self._live_cache[lab_id] = self._live_ring.get_node(lab_id)
            return name
