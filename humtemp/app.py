"""The aiohttp application: wiring settings, shards and routes together."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from aiohttp import web

from humtemp import metrics
from humtemp.api import (
    ACCEPTED,
    BATCH_SIZES,
    BUCKETS,
    EXPOSITION,
    SETTINGS,
    SHARDS,
    STATE,
    TALLIES,
    add_routes,
)
from humtemp.config import Settings, ShardSpec
from humtemp.model import Buckets
from humtemp.store import ShardSet
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
    app[SHARDS] = ShardSet(specs, settings, buckets, tallies)

    async def shard_lifecycle(app: web.Application) -> AsyncIterator[None]:
        await app[SHARDS].start()
        tallies.start()
        yield
        # Runs after the listener closed and in-flight handlers finished: drain queues.
        await app[SHARDS].close()
        await tallies.stop()

    app.cleanup_ctx.append(shard_lifecycle)
    add_routes(app)
    return app
