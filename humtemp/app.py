"""The aiohttp application: wiring settings, shards and routes together."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from humtemp import metrics
from humtemp.api import (
    ACCEPTED,
    BATCH_SIZES,
    BUCKETS,
    EXPOSITION,
    LAB_CAP,
    SETTINGS,
    SHARDS,
    STATE,
    SUMMARIES,
    TALLIES,
    add_routes,
)
from humtemp.cardinality import LabCap
from humtemp.config import Settings, ShardSpec
from humtemp.looplag import watch_loop_lag
from humtemp.model import Buckets
from humtemp.store import ShardSet
from humtemp.summaries import Summaries
from humtemp.tally import Tallies


def create_app(settings: Settings, shards: Sequence[ShardSpec] | None = None,
               exposition: metrics.Exposition | None = None) -> web.Application:
    """Build the app; shards default to the configured ones (embedded mode passes its own);
    /metrics answers for this process unless a worker passes the workers' ``exposition``."""
    specs = tuple(shards) if shards is not None else settings.shards()
    # aiohttp enforces client_max_size while reading; we add a clearer 413 on Content-Length.
    app = web.Application(client_max_size=settings.max_body_bytes)
    buckets = Buckets(settings.bucket_offset, settings.bucket_duration, settings.bucket_retention)
    app[SETTINGS] = settings
    app[BUCKETS] = buckets
    app[STATE] = {"draining": False}
    app[EXPOSITION] = exposition or metrics.Exposition()
    tallies = app[TALLIES] = Tallies()
    app[ACCEPTED] = tallies.counter(metrics.OBSERVATIONS_ACCEPTED)
    app[BATCH_SIZES] = tallies.histogram(metrics.BATCH_SIZE)
    shard_set = app[SHARDS] = ShardSet(specs, settings, buckets, tallies)
    summaries = app[SUMMARIES] = Summaries(shard_set, settings)
    app[LAB_CAP] = LabCap(shard_set, summaries.readers, buckets, settings.max_labs_per_bucket)

    async def shard_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[SHARDS].start()
        tallies.start()
        watchers = [asyncio.create_task(watch_loop_lag(), name="loop-lag"),
                    asyncio.create_task(app[LAB_CAP].sample_forever(), name="bucket-labs")]
        yield
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # Runs after the listener closed and in-flight handlers finished: drain queues.
        await app[SHARDS].close()
        await summaries.close()
        await tallies.stop()

    app.cleanup_ctx.append(shard_lifecycle)
    add_routes(app)
    return app
