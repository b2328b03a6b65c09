"""Event-loop lag: how late a task that sleeps a fixed interval is woken.

Any step that holds the loop (a big decode, a blocking call) delays every request and
every shard flush behind it; the overshoot of a short sleep measures exactly that delay,
whatever caused it. Observed into ``humtemp_event_loop_lag_seconds``.
"""

from __future__ import annotations

import asyncio

from humtemp import metrics

INTERVAL = 0.1


async def watch_loop_lag(interval: float = INTERVAL) -> None:
    """Runs until cancelled; ten cheap observations a second."""
    loop = asyncio.get_running_loop()
    observe = metrics.EVENT_LOOP_LAG.observe
    while True:
        started = loop.time()
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - started - interval))
