"""Consistent hashing: stable owners, small moves, re-routing only a down shard's labs."""

from __future__ import annotations

from humtemp.ring import ShardRing

LABS = [f"lab-{i:05d}" for i in range(20000)]


def test_every_lab_has_one_stable_owner() -> None:
    ring = ShardRing(["a", "b", "c"])
    again = ShardRing(["c", "a", "b"])
    assert all(ring.owner(lab) == again.owner(lab) for lab in LABS)
    counts = {n: sum(ring.owner(lab) == n for lab in LABS) for n in ring.names}
    assert all(4000 < c < 9500 for c in counts.values()), counts


def test_adding_a_fourth_shard_moves_about_a_quarter() -> None:
    three = ShardRing(["a", "b", "c"])
    four = ShardRing(["a", "b", "c", "d"])
    moved = [lab for lab in LABS if three.owner(lab) != four.owner(lab)]
    assert 0.15 * len(LABS) < len(moved) < len(LABS) / 3
    assert all(four.owner(lab) == "d" for lab in moved), "labs only move to the new shard"


def test_down_shard_reroutes_only_its_own_labs() -> None:
    ring = ShardRing(["a", "b", "c"])
    before = {lab: ring.owner(lab) for lab in LABS}
    ring.set_down(["b"])
    for lab in LABS:
        live = ring.live_owner(lab)
        if before[lab] == "b":
            assert live in ("a", "c")
        else:
            assert live == before[lab]
    ring.set_down([])
    assert all(ring.live_owner(lab) == before[lab] for lab in LABS)


def test_all_down_means_no_owner() -> None:
    ring = ShardRing(["a", "b"])
    ring.set_down(["a", "b"])
    assert ring.live_owner("lab01") is None
