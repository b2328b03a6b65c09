"""Polling with a deadline: wait for the state a test needs instead of sleeping for it.

A sleep is either too short on a loaded machine (flaky) or too long on an idle one (slow);
polling returns as soon as the condition holds and fails with a message when it never does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")
INTERVAL = 0.02


def wait_until(predicate: Callable[[], T], timeout: float = 10.0, what: str = "condition",
               ignoring: tuple[type[Exception], ...] = ()) -> T:
    """Call ``predicate`` until it returns something truthy, and return that. An
    exception of a type in ``ignoring`` (e.g. OSError: not listening yet) counts as false."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if result := predicate():
                return result
        except ignoring:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s")
        time.sleep(INTERVAL)


async def async_wait_until(predicate: Callable[[], Awaitable[T]], timeout: float = 10.0,
                           what: str = "condition") -> T:
    """``wait_until`` for a coroutine predicate, e.g. one that asks the app over HTTP."""
    deadline = time.monotonic() + timeout
    while not (result := await predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true after {timeout} s")
        await asyncio.sleep(INTERVAL)
    return result
