"""Request bodies to validated observations, in one C pass on the happy path.

msgspec decodes and type-checks a body in one go. Only when that fails do we
look closer to name the exact item and field: msgspec again, part by part, for a
value of the wrong type (422); the standard ``json`` module for a body msgspec could
not parse, to tell a ``NaN`` literal in ``temp`` (422) from broken JSON (400).
"""

from __future__ import annotations

import json
import math
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

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonlines"})
_single = msgspec.json.Decoder(Observation)
_batch = msgspec.json.Decoder(list[Observation])
_STRUCT_FIELDS = msgspec.structs.fields(Observation)
_FIELDS = tuple(f.name for f in _STRUCT_FIELDS)
_FIELD_DECODERS = {f.name: msgspec.json.Decoder(f.type) for f in _STRUCT_FIELDS}
"""Each field's own type: decoding a refused body part by part finds the culprit."""
_NUMERIC = frozenset(f.name for f in _STRUCT_FIELDS if f.type is not str)
_EXPECTED = {"lab_id": "a string", "timestamp": "a number (Unix seconds)",
             "temp": "a number", "humidity": "a number"}
_as_object = msgspec.json.Decoder(dict[str, msgspec.Raw])
_as_array = msgspec.json.Decoder(list[msgspec.Raw])
_KINDS = {ord("{"): "object", ord("["): "array", ord('"'): "string", ord("t"): "boolean",
          ord("f"): "boolean", ord("n"): "null"}
SHOWN_CHARS = 40

ValidObservation = tuple[Observation, int]
"""A decoded observation and its integer timestamp."""


def _invalid(
    detail: str, field: str | None, index: int | None, reason: str = "invalid"
) -> ApiError:
    return ApiError(422, "invalid_observation", detail, field, index=index, reason=reason)


def _malformed(detail: str, index: int | None = None) -> ApiError:
    return ApiError(400, "malformed_json", detail, None, index=index, reason="malformed")


def _kind(raw: bytes) -> str:
    """The JSON type of a (whitespace-trimmed) value, from its first byte."""
    return _KINDS.get(raw[0], "number") if raw else "nothing"


def _shown(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def _wrong_field(name: str, raw: bytes, index: int | None) -> ApiError:
    kind = _kind(raw)
    if kind == "number" and name in _NUMERIC:  # a number msgspec cannot hold, e.g. 1e400
        return _invalid(f"{name} is out of range: {_shown(raw)}", name, index)
    got = "null" if kind == "null" else f"{kind} {_shown(raw)}"
    return _invalid(f"{name} must be {_EXPECTED[name]}, got {got}", name, index)


def _item_error(raw: bytes, index: int | None, what: str) -> ApiError | None:
    """Why one JSON value is not an observation: its first wrong field in document order
    (as msgspec reports it), else its first missing field; None if nothing is wrong."""
    try:
        members = _as_object.decode(raw)
    except msgspec.ValidationError:
        return _invalid(f"{what} must be a JSON object with {', '.join(_FIELDS)}; "
                        f"got {_kind(raw.strip())}", None, index)
    for name, value in members.items():
        decoder = _FIELD_DECODERS.get(name)
        if decoder is None:
            continue  # unknown fields are ignored, as the original did
        try:
            decoder.decode(value)
        except msgspec.ValidationError:
            return _wrong_field(name, bytes(value).strip(), index)
    for name in _FIELDS:
        if name not in members:
            return _invalid(f"{name} is required", name, index)
    return None


def _explain_invalid(body: bytes, batch: bool, index: int | None = None) -> ApiError:
    """Second look at a body msgspec decoded as JSON but refused as observations.

    The body is split with msgspec into items and fields, and each field decoded again
    with its own type from :class:`Observation`: the item and field named are the ones
    msgspec refused, found without parsing msgspec's error message (whose wording may
    change between releases)."""
    try:
        if not batch:
            what = "the body" if index is None else "each line"
            return _item_error(body, index, what) or _mismatch(index)
        try:
            items = _as_array.decode(body)
        except msgspec.ValidationError:
            return _invalid("the body must be a JSON array of observations, or NDJSON sent "
                            "as Content-Type: application/x-ndjson; got "
                            f"{_kind(body.strip())}", None, index)
        for position, item in enumerate(items):
            error = _item_error(bytes(item), position, "each item")
            if error is not None:
                return error
        return _mismatch(index)
    except (msgspec.DecodeError, RecursionError):
        return _explain_undecodable(body, batch, index)


def _mismatch(index: int | None) -> ApiError:
    """Only reached if msgspec refused a body that no single field explains (e.g. a
    repeated key whose first value was wrong)."""
    return _invalid("the body does not match the observation fields and types", None, index)


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
    except msgspec.ValidationError:
        raise _explain_invalid(body, batch, index) from None
    except msgspec.DecodeError:
        raise _explain_undecodable(body, batch=batch, index=index) from None
    except RecursionError:  # nesting msgspec gives up on, even inside an ignored field
        raise _malformed("JSON nested too deeply", index) from None


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
