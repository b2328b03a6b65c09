"""Reference bare aiohttp server: the ceiling humtemp's POST /observation is compared against.

It does what any JSON endpoint must do and nothing else: read the body, decode it with the
same decoder the core uses (msgspec, into a typed struct, in one C pass), answer 200 `null`.
No validation of ranges, no bucket math, no Redis, no metrics, no access log. Runs on uvloop,
like humtemp, so the ratio isolates humtemp's own per-request work.

Run: python -m bench.bare_server --port 8001
"""

from __future__ import annotations

import argparse

import msgspec
from aiohttp import web

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
    uvloop = None


class Observation(msgspec.Struct, forbid_unknown_fields=True):
    """Same field names and types as the API's observation."""

    lab_id: str
    timestamp: int
    temp: float
    humidity: float


_single = msgspec.json.Decoder(Observation)
_batch = msgspec.json.Decoder(list[Observation])


async def observation(request: web.Request) -> web.Response:
    """Parse one observation; 422 on bad input so a broken load script is visible."""
    try:
        _single.decode(await request.read())
    except msgspec.DecodeError:
        return web.Response(status=422, body=b'{"error":"invalid_observation"}')
    return web.Response(body=b"null", content_type="application/json")


async def observations(request: web.Request) -> web.Response:
    """Parse a JSON array of observations (the batch route's baseline)."""
    try:
        items = _batch.decode(await request.read())
    except msgspec.DecodeError:
        return web.Response(status=422, body=b'{"error":"invalid_observation"}')
    return web.Response(body=b'{"accepted":%d}' % len(items), content_type="application/json")


async def healthz(_request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ok"}', content_type="application/json")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/observation", observation)
    app.router.add_post("/observations", observations)
    app.router.add_get("/healthz", healthz)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    loop = uvloop.new_event_loop() if uvloop is not None else None
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None, print=None, loop=loop)


if __name__ == "__main__":
    main()
