"""Request bodies to validated observations, in one C pass on the happy path.

msgspec decodes and type-checks a body in one go. Only when that fails do we
look closer (with the standard ``json`` module) to name the exact field and item,
e.g. to tell a ``NaN`` literal in ``temp`` (422) from broken JSON (400).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import msgspec

from humtemp.errors import ApiError
from humtemp.model import (
    HUMIDITY_RANGE,
    LAB_ID_PATTERN,
    MAX_FUTURE_SECONDS,
    TEMP_RANGE,
    Buckets,
    Observation,
    ValidationFailure,
    validate,
)

JSON_TYPES = frozenset({"application/json", ""})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonlines"})
_single = msgspec.json.Decoder(Observation)
_batch = msgspec.json.Decoder(list[Observation])
_PATH = re.compile(r"at `\$(?:\[(\d+)\])?(?:\.(\w+))?")
_FIELDS = ("lab_id", "timestamp", "temp", "humidity")

ValidObservation = tuple[Observation, int]
"""A decoded observation and its integer timestamp."""


def is_json_type(content_type: str) -> bool:
    return content_type in JSON_TYPES or content_type.endswith("+json")


def _invalid(
    detail: str, field: str | None, index: int | None, reason: str = "invalid"
) -> ApiError:
    return ApiError(422, "invalid_observation", detail, field, index=index, reason=reason)


def _malformed(detail: str, index: int | None = None) -> ApiError:
    return ApiError(400, "malformed_json", detail, None, index=index, reason="malformed")


def _from_msgspec(exc: msgspec.ValidationError, index: int | None = None) -> ApiError:
    message = str(exc)
    match = _PATH.search(message)
    field = None
    if match:
        if match.group(1) is not None and index is None:
            index = int(match.group(1))
        field = match.group(2)
    if field is None:
        missing = re.search(r"missing required field `(\w+)`", message)
        if missing:
            field = missing.group(1)
    return _invalid(message, field, index)


def _reject_constant(name: str) -> float:
    raise ValueError(name)


def _explain_undecodable(body: bytes, batch: bool, index: int | None = None) -> ApiError:
    """Second look at a body msgspec refused: non-finite literal (422) or bad JSON (400)."""
    try:
        data: Any = json.loads(body)
    except RecursionError:
        return _malformed("JSON nested too deeply", index)
    except (ValueError, UnicodeDecodeError) as exc:
        return _malformed(f"body is not valid JSON: {exc}", index)
    items = data if batch and isinstance(data, list) else [data]
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        for field in _FIELDS:
            value = item.get(field)
            if isinstance(value, float) and not math.isfinite(value):
                where = index if index is not None else (position if batch else None)
                return _invalid(f"{field} must be a finite number, got {value!r}", field, where)
    return _malformed("body is not valid JSON (NaN and Infinity are not JSON)", index)


def _check(obs: Observation, buckets: Buckets, now: int, index: int | None) -> int:
    try:
        return validate(obs, buckets, now)
    except ValidationFailure as failure:
        raise _invalid(failure.detail, failure.field, index, failure.reason) from None


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes, batch: bool,
            index: int | None = None) -> Any:
    """The fast C decode; on failure, the precise 400/422 that explains it."""
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise _from_msgspec(exc, index) from None
    except msgspec.DecodeError:
        raise _explain_undecodable(body, batch=batch, index=index) from None


def decode_one(body: bytes, buckets: Buckets, now: int) -> ValidObservation:
    if not body:
        raise _malformed("empty body: expected a JSON object")
    obs: Observation = _decode(_single, body, batch=False)
    return obs, _check(obs, buckets, now, None)


def _validate_all(
    items: list[Observation], buckets: Buckets, now: int, max_items: int
) -> list[ValidObservation]:
    if len(items) > max_items:
        raise ApiError(
            413, "batch_too_large", f"batch has {len(items)} items, the limit is {max_items}",
            reason="too_large",
        )
    # The rules of model.validate inlined for the common valid item (a function call per
    # item was most of a batch's validation time); anything this does not accept goes
    # through validate() itself, so errors stay exactly the same.
    oldest, latest = buckets.oldest_accepted(now), now + MAX_FUTURE_SECONDS
    (t_low, t_high), (h_low, h_high) = TEMP_RANGE, HUMIDITY_RANGE
    lab_ok = LAB_ID_PATTERN.fullmatch
    valid: list[ValidObservation] = []
    append = valid.append
    for i, obs in enumerate(items):
        ts = obs.timestamp
        if (type(ts) is int and oldest <= ts <= latest and t_low <= obs.temp <= t_high
                and h_low <= obs.humidity <= h_high and lab_ok(obs.lab_id)):
            append((obs, ts))
        else:
            append((obs, _check(obs, buckets, now, i)))
    return valid


def decode_json_batch(
    body: bytes, buckets: Buckets, now: int, max_items: int
) -> list[ValidObservation]:
    if not body:
        raise _malformed("empty body: expected a JSON array of observations")
    items: list[Observation] = _decode(_batch, body, batch=True)
    return _validate_all(items, buckets, now, max_items)


def decode_ndjson_batch(
    body: bytes, buckets: Buckets, now: int, max_items: int
) -> list[ValidObservation]:
    """One observation per line; blank lines are skipped; index counts observations."""
    items: list[Observation] = []
    for line in body.split(b"\n"):
        if not line.strip():
            continue
        index = len(items)
        if index >= max_items:
            raise ApiError(
                413, "batch_too_large", f"batch has more than {max_items} items",
                reason="too_large",
            )
        items.append(_decode(_single, line, batch=False, index=index))
    if not items:
        raise _malformed("empty body: expected NDJSON observations, one per line")
    return _validate_all(items, buckets, now, max_items)
