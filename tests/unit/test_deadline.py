"""ShardDeadline: a timeout like asyncio.timeout that forgives the loop's own stalls."""

from __future__ import annotations

import asyncio
import time

import pytest

from humtemp.deadline import ShardDeadline


async def test_expires_after_its_seconds_when_the_loop_is_free() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError), ShardDeadline(0.1):
        await asyncio.sleep(5)
    assert 0.09 < time.monotonic() - started < 0.5


async def test_a_reply_that_arrived_while_the_loop_was_stuck_is_taken() -> None:
    """The awaited result is ready at 0.05 s, but the loop is stuck until 0.3 s, past
    the 0.1 s deadline: asyncio.timeout would raise, this one lets the result in."""
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.01, time.sleep, 0.3)  # the loop is stuck from 0.01 s to 0.31 s
    loop.call_later(0.05, reply.set_result, "stored")
    with ShardDeadline(0.1):
        assert await reply == "stored"
    with pytest.raises(TimeoutError):
        loop.call_later(0.01, time.sleep, 0.3)
        async with asyncio.timeout(0.1):
            await loop.create_future()  # the difference, shown with asyncio's own timer


async def test_a_stuck_loop_buys_the_shard_its_seconds_once_not_forever() -> None:
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, time.sleep, 0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError), ShardDeadline(0.1):
        await loop.create_future()  # never answered
    assert time.monotonic() - started < 0.6


async def test_someone_elses_cancellation_stays_a_cancellation() -> None:
    async def wait() -> None:
        with ShardDeadline(5):
            await asyncio.sleep(5)

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
