"""One middleware for every request: error shape, metrics, safe headers.

Merged into one layer because each aiohttp middleware costs a coroutine call per
request on the hot path. Internal errors are logged with their trace and answered
with a bare 500 JSON body: clients never see a stack trace.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_exceptions import HTTPException

from humtemp import metrics
from humtemp.errors import ApiError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
INGEST_ROUTES = frozenset({"/observation", "/observations"})
SAFE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Server": "humtemp",
}
_children: dict[tuple[str, str, str], tuple[object, object]] = {}


def _route_name(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    if resource is None or isinstance(request.match_info.http_exception, HTTPException):
        return "other"
    return resource.canonical


def _metric_children(route: str, method: str, status: int) -> tuple[object, object]:
    """Labelled children cached: ``labels()`` is a dict lookup plus locking each time."""
    key = (route, method, f"{status // 100}xx")
    try:
        return _children[key]
    except KeyError:
        pair = _children[key] = (
            metrics.HTTP_REQUESTS.labels(*key),
            metrics.HTTP_DURATION.labels(*key),
        )
        return pair


def _from_http_exception(exc: HTTPException) -> web.Response:
    if exc.status == 404:
        return ApiError(404, "not_found", "no such route").response()
    if exc.status == 405:
        allowed = getattr(exc, "allowed_methods", ()) or ()
        response = ApiError(405, "method_not_allowed", "method not allowed here").response()
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response
    if exc.status == 413:
        return ApiError(413, "body_too_large", "request body too large").response()
    return ApiError(exc.status, "http_error", exc.reason).response()


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    route = _route_name(request)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
        if exc.reason and route in INGEST_ROUTES:
            metrics.OBSERVATIONS_REJECTED.labels(reason=exc.reason).inc()
    except HTTPException as exc:
        response = _from_http_exception(exc)
    except Exception:
        log.exception("internal error on %s %s", request.method, request.path)
        response = ApiError(500, "internal_error", "internal server error").response()
    response.headers.update(SAFE_HEADERS)
    counter, histogram = _metric_children(route, request.method, response.status)
    counter.inc()  # type: ignore[attr-defined]
    histogram.observe(time.perf_counter() - started)  # type: ignore[attr-defined]
    return response

