"""Every route's wrapper: the error shape, request metrics, and JSON 404/405.

Each handler is wrapped once, at startup, instead of using an aiohttp middleware:
with any middleware at all aiohttp runs an extra layer per request (it sets
``current_app``) and rebuilds the handler chain through a cache lookup. Measured
at c64: ~15 µs of CPU per request, a sixth of the hot path (docs/benchmarks.md).
Internal errors are logged with their trace and answered with a bare 500 JSON
body: clients never see a stack trace. A client that went away mid-request is
recorded as 499 (nginx's "client closed request"): its error, not ours, so it
neither logs a traceback nor counts as a 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter

from aiohttp import web
from aiohttp.web_exceptions import HTTPException

from humtemp import metrics
from humtemp.errors import ApiError
from humtemp.tally import HistogramTally, Tallies

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INGEST_ROUTES = frozenset({"/observation", "/observations"})
UNMATCHED = "other"
"""Route label of requests that matched no route (404/405)."""
CLIENT_CLOSED = 499


def _from_http_exception(exc: HTTPException) -> web.Response:
    if exc.status == 404:
        return ApiError(404, "not_found", "no such route").response()
    if exc.status == 413:
        return ApiError(413, "body_too_large", "request body too large").response()
    return ApiError(exc.status, "http_error", exc.reason).response()


class RouteMetrics:
    """One route's request count and latency, by method and status class, as tallies
    (:mod:`humtemp.tally`) of the labelled Prometheus children."""

    __slots__ = ("_tallies", "by_key", "route")

    def __init__(self, route: str, tallies: Tallies) -> None:
        self.route = route
        self._tallies = tallies
        self.by_key: dict[tuple[str, int], HistogramTally] = {}

    def record(self, method: str, status: int, seconds: float) -> None:
        key = (method, status // 100)
        tally = self.by_key.get(key)
        if tally is None:
            labels = (self.route, method, f"{status // 100}xx")
            tally = self.by_key[key] = self._tallies.histogram(
                metrics.HTTP_DURATION.labels(*labels),
                counter=metrics.HTTP_REQUESTS.labels(*labels),
            )
        tally.observe(seconds)


def instrumented(route: str, handler: Handler, tallies: Tallies) -> Handler:
    """``handler`` answering errors as JSON and counting every request under ``route``."""
    recorder = RouteMetrics(route, tallies)
    count_rejects = route in INGEST_ROUTES

    async def handle(request: web.Request) -> web.StreamResponse:
        started = perf_counter()
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response()
            if exc.reason and count_rejects:
                metrics.OBSERVATIONS_REJECTED.labels(reason=exc.reason).inc()
        except HTTPException as exc:
            response = _from_http_exception(exc)
        except asyncio.CancelledError:  # handler_cancellation on: a hang-up cancels us
            if request.transport is None:
                recorder.record(request.method, CLIENT_CLOSED, perf_counter() - started)
            raise
        except Exception as exc:
            response = _unexpected(request, exc)
        recorder.record(request.method, response.status, perf_counter() - started)
        return response

    handle.__name__ = handle.__qualname__ = getattr(handler, "__name__", "handler")
    handle.__doc__ = handler.__doc__
    return handle


def _unexpected(request: web.Request, exc: Exception) -> web.Response:
    """499 if the client hung up (e.g. mid-upload: nobody is left to answer), else a
    logged internal error answered 500."""
    transport = request.transport
    if isinstance(exc, ConnectionError) and (transport is None or transport.is_closing()):
        log.debug("client closed %s %s before it was answered", request.method, request.path)
        return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
    log.error("internal error on %s %s", request.method, request.path, exc_info=exc)
    return ApiError(500, "internal_error", "internal server error").response()


async def unmatched(request: web.Request) -> web.Response:
    """The catch-all route: 405 with ``Allow`` when the path exists for other methods,
    else 404, both in the API's JSON error shape."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is request.match_info.route.resource:
            continue
        _, methods = await resource.resolve(request)
        allowed |= methods
    if not allowed:
        raise ApiError(404, "not_found", "no such route")
    raise ApiError(405, "method_not_allowed", "method not allowed here",
                   headers={"Allow": ", ".join(sorted(allowed))})
