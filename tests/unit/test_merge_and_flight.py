"""Pure logic of the read path: the k-way merge of shard pages and the shared flight."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest

from humtemp.flight import Flight, Head
from humtemp.merge import merge_sorted
from humtemp.model import Aggregate
from humtemp.reader import Chunk


def _agg(n: int) -> Aggregate:
    return Aggregate(n, float(n), 2.0 * n, 1.0, 1.0, 2.0, 2.0)


async def _pages(chunks: list[Chunk]) -> AsyncIterator[Chunk]:
    for chunk in chunks:
        await asyncio.sleep(0)
        yield chunk


def _paged(labs: list[str], size: int) -> list[Chunk]:
    rows = [(lab, _agg(1)) for lab in labs]
    return [rows[i:i + size] for i in range(0, len(rows), size)]


@pytest.mark.parametrize("seed", range(20))
async def test_merge_is_sorted_and_merges_labs_on_several_shards(seed: int) -> None:
    rng = random.Random(seed)
    universe = [f"lab{i:05d}" for i in range(rng.randint(0, 3000))]
    shards = [sorted(rng.sample(universe, rng.randint(0, len(universe)))) for _ in range(3)]
    sources = []
    for labs in shards:
        pages = _paged(labs, rng.choice([1, 7, 500]))
        rest = _pages(pages[1:])
        sources.append((pages[0] if pages else None, rest))
    merged = [row async for chunk in merge_sorted(sources) for row in chunk]
    expected = sorted(set().union(*map(set, shards)))
    assert [lab for lab, _ in merged] == expected
    for lab, agg in merged:
        assert agg.count == sum(lab in s for s in map(set, shards))


async def test_merge_propagates_a_shard_error() -> None:
    async def failing() -> AsyncIterator[Chunk]:
        raise ConnectionResetError("gone")
        yield []

    sources = [([("a", _agg(1))], failing()), ([("b", _agg(1))], _pages([]))]
    with pytest.raises(ConnectionResetError):
        async for _ in merge_sorted(sources):
            pass


async def test_readers_that_join_in_time_get_every_chunk() -> None:
    flight = Flight(max_bytes=1 << 20)
    with flight.join() as first:
        flight.start(Head())
        await flight.put(b"a")
        with flight.join() as second:
            await flight.put(b"b")
            flight.finish()
            assert [c async for c in first] == [b"a", b"b"]
            assert [c async for c in second] == [b"a", b"b"]
    assert flight.joinable


async def test_a_slow_reader_bounds_what_the_flight_holds() -> None:
    """Past max_bytes the producer waits for the slowest reader instead of buffering,
    and the flight stops taking readers (it no longer has the start of the body)."""
    flight = Flight(max_bytes=10)
    held: list[int] = []

    async def produce() -> None:
        for i in range(50):
            await flight.put(b"%04d" % i)
            held.append(flight._held)
        flight.finish()

    with flight.join() as reader:
        producer = asyncio.create_task(produce())
        got = []
        async for chunk in reader:
            got.append(chunk)
            await asyncio.sleep(0.001)
        await producer
    assert got == [b"%04d" % i for i in range(50)]
    assert max(held) <= 10 + 4 and not flight.joinable


async def test_a_flight_nobody_reads_past_its_bound_stops() -> None:
    flight = Flight(max_bytes=4)
    with pytest.raises(asyncio.CancelledError):
        for _ in range(3):
            await flight.put(b"xxxx")


async def test_an_error_midway_reaches_every_reader() -> None:
    flight = Flight(max_bytes=1 << 20)
    with flight.join() as reader:
        flight.start(Head())
        await flight.put(b"[")
        flight.finish(ConnectionResetError("shard gone"))
        with pytest.raises(ConnectionResetError):
            async for _ in reader:
                pass
    assert not flight.joinable
