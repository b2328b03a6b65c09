"""HTTP routes: the original API (`/observation`, `/summary`) and what was added.

Handlers stay thin: decode (:mod:`humtemp.decoding`), hand the observations to
the shards (:mod:`humtemp.store`), shape the answer. Errors are raised as
:class:`~humtemp.errors.ApiError` and rendered by :mod:`humtemp.instrument`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from humtemp import metrics
from humtemp.cardinality import LabCap
from humtemp.config import Settings
from humtemp.decoding import NDJSON_TYPES, decode_json_batch, decode_ndjson_batch, decode_one
from humtemp.errors import JSON_HEADERS, SAFE_HEADERS, ApiError, json_response
from humtemp.flight import Flight
from humtemp.idempotency import HEADER as IDEMPOTENCY_HEADER
from humtemp.idempotency import IdempotencyKey, fingerprint, parse
from humtemp.instrument import UNMATCHED, Handler, instrumented, unmatched
from humtemp.model import LAB_ID_PATTERN, Aggregate, Buckets
from humtemp.store import KeyReused, ShardSet, StoreError, WriteFailed
from humtemp.summaries import NoShardReadable, Summaries, partial_headers
from humtemp.tally import CounterTally, HistogramTally, Tallies

SETTINGS = web.AppKey("settings", Settings)
SHARDS = web.AppKey("shards", ShardSet)
BUCKETS = web.AppKey("buckets", Buckets)
STATE = web.AppKey("state", dict)
SUMMARIES = web.AppKey("summaries", Summaries)
LAB_CAP = web.AppKey("lab_cap", LabCap)
TALLIES = web.AppKey("tallies", Tallies)
ACCEPTED = web.AppKey("accepted", CounterTally)
BATCH_SIZES = web.AppKey("batch_sizes", HistogramTally)
EXPOSITION = web.AppKey("exposition", metrics.Exposition)
OPENAPI = resources.files("humtemp").joinpath("openapi.json").read_bytes()
log = logging.getLogger(__name__)
_NULL = b"null"
PLAIN_JSON = frozenset({"application/json", "application/json; charset=utf-8",
                        "application/json;charset=utf-8", "application/json; charset=UTF-8"})
MAX_OFFSET = 1_000_000
MAX_PAGE_LIMIT = 100_000


def _store_error(exc: StoreError | WriteFailed | KeyReused, batch_size: int | None = None
                 ) -> ApiError:
    """The answer to a write the shards did not wholly store. It says what is known:
    a certain refusal has its own code, only a true timeout "may or may not be stored",
    and a batch (``batch_size`` observations) says how many observations were stored,
    not stored, and unknown."""
    if isinstance(exc, KeyReused):
        return ApiError(422, "idempotency_key_reused",
                        f"{IDEMPOTENCY_HEADER} {exc} was used before with another request "
                        "body; nothing was stored", IDEMPOTENCY_HEADER,
                        reason="idempotency_key_reused")
    if isinstance(exc, WriteFailed):
        counts = {"stored": exc.stored, "not_stored": exc.not_stored, "unknown": exc.unknown}
        exc = exc.cause
    elif batch_size is not None:  # the whole batch failed alike
        counts = {"stored": 0, "not_stored": batch_size if exc.certain else 0,
                  "unknown": 0 if exc.certain else batch_size}
    error = ApiError(503, exc.code, exc.detail, reason=exc.code, headers={"Retry-After": "1"})
    if batch_size is not None:
        error.extra = counts
    return error


def _idempotency(request: web.Request, body: bytes, raw: str | None) -> IdempotencyKey | None:
    """The request's key (``raw``: its Idempotency-Key header, looked up by the caller so
    the usual request without one costs no call) and the body's fingerprint."""
    if raw is None:
        return None
    try:
        key = parse(raw)
    except ValueError as exc:
        raise ApiError(400, "invalid_idempotency_key", str(exc), IDEMPOTENCY_HEADER,
                       reason="malformed") from None
    return IdempotencyKey(key, fingerprint(request.path, body))


def _require_token(request: web.Request, tokens: tuple[str, ...]) -> None:
    """Constant-time bearer check against every configured token."""
    if not tokens:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    ok = False
    if scheme.lower() == "bearer" and given:
        # Header bytes that are not UTF-8 arrive as surrogate escapes: compare them as the
        # bytes they were (never equal to a configured token) instead of failing to encode.
        sent = given.encode("utf-8", "surrogateescape")
        for token in tokens:
            ok |= hmac.compare_digest(sent, token.encode())
    if not ok:
        raise ApiError(401, "unauthorized", "missing or invalid bearer token",
                       headers={"WWW-Authenticate": 'Bearer realm="humtemp"'})


async def _read_body(request: web.Request, settings: Settings) -> bytes:
    length = request.content_length
    if length is not None and length > settings.max_body_bytes:
        raise ApiError(413, "body_too_large",
                       f"body of {length} bytes exceeds the limit of {settings.max_body_bytes}",
                       reason="too_large")
    try:
        if request.content.is_eof():  # the usual case: it came with the headers, no wait
            return await request.read()
        async with asyncio.timeout(settings.client_timeout):  # a stalled upload ends here
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large",
                       f"body exceeds the limit of {settings.max_body_bytes} bytes",
                       reason="too_large") from None
    except TimeoutError:
        raise ApiError(408, "request_timeout",
                       f"body not received within {settings.client_timeout:g} s",
                       reason="timeout", close_connection=True) from None
    except RequestPayloadError:  # e.g. not encoded as its Content-Encoding says
        raise ApiError(400, "malformed_body",
                       "body could not be decoded (check Content-Encoding and Transfer-Encoding)",
                       reason="malformed") from None


def _is_ndjson(request: web.Request) -> bool:
    """Whether a batch is NDJSON: only its Content-Type says so; anything else is read as
    a JSON array. Plain JSON is recognised without aiohttp's header parser (a few µs)."""
    raw = request.headers.get("Content-Type")
    return raw is not None and raw not in PLAIN_JSON and request.content_type in NDJSON_TYPES


async def post_observation(request: web.Request) -> web.Response:
    """One observation, answered as the original did: 200 with a JSON ``null``."""
    app = request.app
    settings = app[SETTINGS]
    _require_token(request, settings.ingest_tokens)
    # The body is JSON whatever the Content-Type says, as the original (FastAPI) read it:
    # sensors sending `curl -d` (form-encoded), text/plain or no type at all keep working.
    body = await _read_body(request, settings)
    buckets = app[BUCKETS]
    raw_key = request.headers.get(IDEMPOTENCY_HEADER)
    key = None if raw_key is None else _idempotency(request, body, raw_key)
    obs, ts = decode_one(body, buckets, int(time.time()))
    bucket = buckets.start(ts)
    if settings.max_labs_per_bucket:
        await app[LAB_CAP].admit(((obs.lab_id, bucket),))
    try:
        await app[SHARDS].write([(obs.lab_id, bucket, ts, obs.temp, obs.humidity)], key)
    except (StoreError, WriteFailed, KeyReused) as exc:
        raise _store_error(exc) from None
    app[ACCEPTED].inc()
    return web.Response(body=_NULL, headers=JSON_HEADERS)


async def post_observations(request: web.Request) -> web.Response:
    """A batch (JSON array or NDJSON): every item valid, or nothing is stored."""
    app = request.app
    settings = app[SETTINGS]
    _require_token(request, settings.ingest_tokens)
    buckets = app[BUCKETS]
    now = int(time.time())
    body = await _read_body(request, settings)
    if _is_ndjson(request):
        valid = decode_ndjson_batch(body, buckets, now, settings.max_batch_items)
    else:
        valid = decode_json_batch(body, buckets, now, settings.max_batch_items)
    key = _idempotency(request, body, request.headers.get(IDEMPOTENCY_HEADER))
    if not valid:
        raise ApiError(422, "invalid_observation", "batch is empty", None, reason="invalid")
    labs = {obs.lab_id for obs, _ in valid}
    if len(labs) > settings.max_batch_labs:
        raise ApiError(413, "batch_too_large",
                       f"batch names {len(labs)} labs, the limit is {settings.max_batch_labs}",
                       reason="too_large")
    items = [(o.lab_id, buckets.start(ts), ts, o.temp, o.humidity) for o, ts in valid]
    if settings.max_labs_per_bucket:
        await app[LAB_CAP].admit(list({(i[0], i[1]) for i in items}))
    try:
        await app[SHARDS].write(items, key)
    except (StoreError, WriteFailed, KeyReused) as exc:
        raise _store_error(exc, len(items)) from None
    app[ACCEPTED].inc(len(items))
    app[BATCH_SIZES].observe(len(items))
    return json_response({"accepted": len(items)})


def _offset(request: web.Request) -> int:
    raw = request.query.get("offset", "-1")
    try:
        offset = int(raw)
    except ValueError:  # also for more than 4300 digits: the detail quotes only the start
        quoted = repr(raw) if len(raw) <= 40 else repr(raw[:40]) + "..."
        raise ApiError(422, "invalid_parameter", f"offset must be an integer, got {quoted}",
                       "offset") from None
    if abs(offset) > MAX_OFFSET:
        raise ApiError(422, "invalid_parameter",
                       f"offset must be between -{MAX_OFFSET} and {MAX_OFFSET}", "offset")
    return offset


def _bucket_for(request: web.Request) -> int:
    return request.app[BUCKETS].relative(int(time.time()), _offset(request))


def _stats(agg: Aggregate | None) -> dict[str, Any]:
    if agg is None:
        return {"count": 0, "avg_temp": None, "avg_humidity": None, "min_temp": None,
                "max_temp": None, "min_humidity": None, "max_humidity": None}
    return {"count": agg.count, "avg_temp": agg.avg_temp, "avg_humidity": agg.avg_humidity,
            "min_temp": agg.temp_min, "max_temp": agg.temp_max,
            "min_humidity": agg.hum_min, "max_humidity": agg.hum_max}


def _no_shard(exc: NoShardReadable) -> ApiError:
    return ApiError(503, "no_shard_readable",
                    "no storage shard could be read (missing: "
                    f"{', '.join(exc.missing)}); retry shortly",
                    headers={"Retry-After": "1", **partial_headers(exc.missing)})


async def _stream(request: web.Request, flight: Flight) -> web.StreamResponse:
    """Send a read's chunks as they are produced (chunked transfer).

    The status line waits for the first page of every shard. A shard failing after that
    aborts the connection: the client sees a truncated body, not a complete-looking
    answer with labs missing."""
    with flight.join() as chunks:
        try:
            head = await asyncio.shield(flight.head)
        except NoShardReadable as exc:
            raise _no_shard(exc) from None
        response = web.StreamResponse(status=head.status, headers={**JSON_HEADERS, **head.headers})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if request.method == "HEAD":  # headers only: aiohttp sends whatever is written
            await response.write_eof()
            return response
        try:
            async for chunk in chunks:
                await response.write(chunk)
                # write() returns without suspending while the socket takes everything (a
                # fast client, a cached body): yield anyway, so writes run between chunks.
                await asyncio.sleep(0)
        except ConnectionResetError:
            return response  # the client went away
        except Exception as exc:
            log.warning("%s: response aborted after a failure midway (%s: %s)",
                        request.path, type(exc).__name__, exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
    return response


def _wants_fresh(request: web.Request) -> bool:
    """``Cache-Control: no-cache`` (or ``no-store``, ``max-age=0``): the client needs every
    write acknowledged before its request, so no shared or cached read will do."""
    directives = request.headers.get("Cache-Control", "").lower()
    return any(d in directives for d in ("no-cache", "no-store", "max-age=0"))


async def get_summary(request: web.Request) -> web.StreamResponse:
    """The original summary: exactly lab_id, avg_temp, avg_humidity, sorted by lab_id."""
    _require_token(request, request.app[SETTINGS].read_tokens)
    flight = request.app[SUMMARIES].summary(_bucket_for(request), _wants_fresh(request))
    return await _stream(request, flight)


def _after(request: web.Request) -> str | None:
    after = request.query.get("after")
    if after is not None and not LAB_ID_PATTERN.fullmatch(after):
        raise ApiError(422, "invalid_parameter",
                       "after must be a lab id: 1-50 characters of letters, digits and / _ . -",
                       "after")
    return after


def _limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(422, "invalid_parameter", f"limit must be an integer, got {raw!r}",
                       "limit") from None
    if not 1 <= limit <= MAX_PAGE_LIMIT:
        raise ApiError(422, "invalid_parameter",
                       f"limit must be between 1 and {MAX_PAGE_LIMIT}, got {limit}", "limit")
    return limit


async def get_summary_detail(request: web.Request) -> web.StreamResponse:
    """All labs with count/min/max, and which shards (if any) could not be read;
    ``limit`` and ``after`` page through them (``next_after`` is the next cursor)."""
    _require_token(request, request.app[SETTINGS].read_tokens)
    bucket = _bucket_for(request)
    after, limit = _after(request), _limit(request)
    flight = request.app[SUMMARIES].detail(bucket, request.app[BUCKETS].duration, after, limit,
                                           _wants_fresh(request))
    return await _stream(request, flight)


async def get_summary_lab(request: web.Request) -> web.Response:
    """One lab's count, averages, min and max; count 0 when it sent nothing."""
    _require_token(request, request.app[SETTINGS].read_tokens)
    lab_id = request.query.get("lab_id")
    if lab_id is None:
        raise ApiError(422, "invalid_parameter", "lab_id query parameter is required", "lab_id")
    if not LAB_ID_PATTERN.fullmatch(lab_id):
        raise ApiError(422, "invalid_parameter",
                       "lab_id must be 1-50 characters of letters, digits and / _ . -", "lab_id")
    bucket = _bucket_for(request)
    try:
        agg, missing = await request.app[SUMMARIES].read_lab(bucket, lab_id)
    except NoShardReadable as exc:
        raise _no_shard(exc) from None
    body = {
        "lab_id": lab_id,
        "bucket_start": bucket,
        "bucket_end": bucket + request.app[BUCKETS].duration,
        **_stats(agg),
        "partial": bool(missing),
        "missing_shards": missing,
    }
    return json_response(body, headers=partial_headers(missing))


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers. Shard trouble is readiness, not liveness."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: enough live shards, and not draining for shutdown."""
    app = request.app
    shards = app[SHARDS]
    states = shards.states()
    live = sum(1 for s in states.values() if s == "up")
    draining = app[STATE].get("draining", False)
    ready = live >= app[SETTINGS].min_live_shards and not draining and live > 0
    body = {
        "status": "ready" if ready else ("draining" if draining else "not ready"),
        "live_shards": live,
        "min_live_shards": app[SETTINGS].min_live_shards,
        "shards": states,
        "refused": shards.refusals(),
    }
    return json_response(body, status=200 if ready else 503)


async def get_metrics(request: web.Request) -> web.Response:
    request.app[TALLIES].fold()  # this process's counts are exact in its own answer
    body, content_type = request.app[EXPOSITION].render()
    return web.Response(body=body, headers={**SAFE_HEADERS, "Content-Type": content_type})


async def get_openapi(request: web.Request) -> web.Response:
    """The API description: behind the read tokens when they are set, like every read."""
    _require_token(request, request.app[SETTINGS].read_tokens)
    return web.Response(body=OPENAPI, headers=JSON_HEADERS)


ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/observation", post_observation),
    ("POST", "/observations", post_observations),
    ("GET", "/summary", get_summary),
    ("GET", "/summary/detail", get_summary_detail),
    ("GET", "/summary/lab", get_summary_lab),
    ("GET", "/healthz", healthz),
    ("GET", "/readyz", readyz),
    ("GET", "/metrics", get_metrics),
    ("GET", "/openapi.json", get_openapi),
)


def add_routes(app: web.Application) -> None:
    """The API's routes, each wrapped by :func:`instrumented`; last, a catch-all that
    answers unknown paths and methods in the same JSON error shape."""
    tallies = app[TALLIES]
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, instrumented(path, handler, tallies))
        else:
            app.router.add_route(method, path, instrumented(path, handler, tallies))
    app.router.add_route("*", "/{path:.*}", instrumented(UNMATCHED, unmatched, tallies))
