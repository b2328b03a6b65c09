"""Request bodies to observations: the errors name the right item and field, and the
batch fast path agrees with ``model.validate``.

The error cases pin item, field and wording for every kind of refusal msgspec can
make, so a msgspec upgrade that changes what it refuses (or how the body is split to
find the culprit) fails here, not in front of a sensor.
"""

from __future__ import annotations

import json
import math
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from humtemp import decoding
from humtemp.decoding import decode_json_batch, decode_ndjson_batch, decode_one
from humtemp.errors import ApiError
from humtemp.model import Buckets, Observation, ValidationFailure, validate

BUCKETS = Buckets(offset=0, duration=86400, retention=2)
NOW = 1_700_000_000
GOOD = {"lab_id": "lab01", "timestamp": NOW, "temp": 21.5, "humidity": 40.0}


def _body(**changes: Any) -> dict[str, Any]:
    """GOOD with fields replaced; a value of ``...`` removes the field."""
    return {k: v for k, v in {**GOOD, **changes}.items() if v is not ...}


def _error(call: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as err:
        call(*args)
    return err.value


def _one(raw: str) -> ApiError:
    return _error(decode_one, raw.encode(), BUCKETS, NOW)


def _batch(raw: str) -> ApiError:
    return _error(decode_json_batch, raw.encode(), BUCKETS, NOW, 100)


def _assert_no_library_wording(error: ApiError) -> None:
    """msgspec says "Expected `float`, got `str` - at `$.temp`"; we say "temp must be..."."""
    for phrase in ("`$", "Expected `", "Object missing"):
        assert phrase not in error.detail, error.detail


@pytest.mark.parametrize(
    ("field", "raw_value", "detail"),
    [
        ("lab_id", "12", "lab_id must be a string, got number 12"),
        ("lab_id", "null", "lab_id must be a string, got null"),
        ("timestamp", '"yesterday"', 'timestamp must be a number (Unix seconds), got string '
                                     '"yesterday"'),
        ("timestamp", "true", "timestamp must be a number (Unix seconds), got boolean true"),
        ("timestamp", "1e400", "timestamp is out of range: 1e400"),
        ("temp", '"21.5"', 'temp must be a number, got string "21.5"'),
        ("temp", "[1]", "temp must be a number, got array [1]"),
        ("humidity", "false", "humidity must be a number, got boolean false"),
        ("humidity", '{"value": 40}', 'humidity must be a number, got object {"value": 40}'),
    ],
)
def test_a_value_of_the_wrong_type_names_its_field(field: str, raw_value: str,
                                                   detail: str) -> None:
    raw = json.dumps(GOOD).replace(json.dumps(GOOD[field]), raw_value, 1)
    error = _one(raw)
    assert (error.status, error.error, error.field, error.index) == (
        422, "invalid_observation", field, None)
    assert error.detail == detail
    _assert_no_library_wording(error)


@pytest.mark.parametrize("field", list(GOOD))
def test_a_missing_field_is_named(field: str) -> None:
    error = _one(json.dumps(_body(**{field: ...})))
    assert (error.status, error.field, error.index, error.detail) == (
        422, field, None, f"{field} is required")


def test_the_first_wrong_field_in_the_body_is_the_one_named() -> None:
    """As msgspec reports it: document order, wrong types before missing fields."""
    raw = '{"humidity": "x", "lab_id": 1, "timestamp": 5}'
    assert _one(raw).field == "humidity"
    assert _one('{"lab_id": "a", "timestamp": 5}').field == "temp"


def test_a_very_long_value_is_shortened_in_the_detail() -> None:
    error = _one(json.dumps(_body(temp="x" * 500)))
    assert error.field == "temp"
    assert len(error.detail) < 100 and error.detail.endswith("…")


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("[1, 2]", "the body must be a JSON object with lab_id, timestamp, temp, humidity; "
                   "got array"),
        ('"lab01"', "the body must be a JSON object with lab_id, timestamp, temp, humidity; "
                    "got string"),
        ("[" * 100_000 + "]" * 100_000, "the body must be a JSON object with lab_id, "
                                        "timestamp, temp, humidity; got array"),
    ],
    ids=["array", "string", "deeply-nested"],
)
def test_a_body_that_is_not_an_object_names_no_field(raw: str, detail: str) -> None:
    error = _one(raw)
    assert (error.status, error.field, error.index, error.detail) == (422, None, None, detail)


@pytest.mark.parametrize("batch", [False, True])
def test_nesting_too_deep_for_msgspec_is_a_400_even_in_an_ignored_field(batch: bool) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    raw = json.dumps(GOOD).replace("{", '{"extra": ' + deep + ", ", 1)
    error = _batch(f"[{raw}]") if batch else _one(raw)
    assert (error.status, error.error, error.detail) == (
        400, "malformed_json", "JSON nested too deeply")


def test_unknown_fields_are_ignored_however_nested() -> None:
    obs, ts = decode_one(json.dumps(_body(extra={"a": [1, {"b": None}]})).encode(), BUCKETS, NOW)
    assert (obs.lab_id, ts) == ("lab01", NOW)


def test_a_batch_names_the_index_and_field_of_the_first_bad_item() -> None:
    items = [GOOD, GOOD, _body(temp="warm"), _body(humidity="wet")]
    error = _batch(json.dumps(items))
    assert (error.status, error.field, error.index) == (422, "temp", 2)
    assert error.detail == 'temp must be a number, got string "warm"'
    assert error.body()["index"] == 2


@pytest.mark.parametrize(
    ("items", "field", "index", "detail"),
    [
        ([GOOD, 3], None, 1, "each item must be a JSON object with lab_id, timestamp, temp, "
                             "humidity; got number"),
        ([GOOD, [GOOD]], None, 1, "each item must be a JSON object with lab_id, timestamp, "
                                  "temp, humidity; got array"),
        ([_body(lab_id=...)], "lab_id", 0, "lab_id is required"),
        ([GOOD, _body(timestamp=[[NOW]])], "timestamp", 1,
         f"timestamp must be a number (Unix seconds), got array [[{NOW}]]"),
    ],
    ids=["number-item", "nested-array-item", "missing-field", "nested-value"],
)
def test_batch_errors_name_item_and_field(items: list[Any], field: str | None, index: int,
                                          detail: str) -> None:
    error = _batch(json.dumps(items))
    assert (error.status, error.field, error.index, error.detail) == (422, field, index, detail)
    _assert_no_library_wording(error)


def test_a_batch_that_is_not_an_array_names_no_item() -> None:
    error = _batch(json.dumps(GOOD))
    assert (error.status, error.field, error.index) == (422, None, None)
    assert error.detail == ("the body must be a JSON array of observations, or NDJSON sent as "
                            "Content-Type: application/x-ndjson; got object")


def test_an_ndjson_line_is_named_by_its_index() -> None:
    lines = "\n".join([json.dumps(GOOD), "", json.dumps(_body(timestamp="now"))])
    error = _error(decode_ndjson_batch, lines.encode(), BUCKETS, NOW, 100)
    assert (error.status, error.field, error.index) == (422, "timestamp", 1)
    error = _error(decode_ndjson_batch, b'{"lab_id": "a"}\n[1]', BUCKETS, NOW, 100)
    assert (error.field, error.index) == ("timestamp", 0)


def test_non_finite_literals_and_broken_json_are_told_apart() -> None:
    nan = _one(json.dumps(GOOD).replace("21.5", "NaN"))
    assert (nan.status, nan.field) == (422, "temp")
    broken = _one('{"lab_id": "lab01", "timest')
    assert (broken.status, broken.error, broken.field) == (400, "malformed_json", None)
    later_broken = _batch('[{"lab_id": 1}, garbage')
    assert (later_broken.status, later_broken.error) == (400, "malformed_json")


def test_the_expected_wording_covers_every_field() -> None:
    names = {f.name for f in msgspec.structs.fields(Observation)}
    assert set(decoding._EXPECTED) == names == set(decoding._FIELD_DECODERS)


# --- properties ---------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6,
)
FIELD_VALUES = {
    "lab_id": st.text(max_size=8) | JSON_VALUES,
    "timestamp": st.integers() | st.floats(allow_nan=False, allow_infinity=False) | JSON_VALUES,
    "temp": st.floats(allow_nan=False, allow_infinity=False) | st.integers() | JSON_VALUES,
    "humidity": st.floats(allow_nan=False, allow_infinity=False) | JSON_VALUES,
}


@st.composite
def candidate_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Objects that are often, but not always, observations: fields in any order, some
    missing, some of the wrong type, unknown ones mixed in."""
    names = draw(st.permutations([*FIELD_VALUES, "extra"]))
    present = [n for n in names if draw(st.booleans()) or n == "lab_id"]
    return {n: draw(FIELD_VALUES.get(n, JSON_VALUES)) for n in present}


@settings(max_examples=400, deadline=None)
@given(st.lists(candidate_objects(), min_size=1, max_size=4))
def test_the_explanation_agrees_with_msgspec_on_what_it_refuses(
    items: list[dict[str, Any]],
) -> None:
    """msgspec refuses a batch exactly when part by part finds a culprit, and the culprit
    is the first refused item; its named field alone is refused by its own type."""
    body = json.dumps(items).encode()
    try:
        decoding._batch.decode(body)
        refused = False
    except msgspec.ValidationError:
        refused = True
    culprit = decoding._explain_invalid(body, batch=True)
    first_bad = next((i for i, item in enumerate(items)
                      if _refused_alone(json.dumps(item).encode())), None)
    assert refused == (first_bad is not None)
    if refused:
        assert culprit.index == first_bad
        assert culprit.field in GOOD
        item = items[first_bad]
        if culprit.field in item:
            raw = json.dumps(item[culprit.field]).encode()
            with pytest.raises(msgspec.ValidationError):
                decoding._FIELD_DECODERS[culprit.field].decode(raw)
        _assert_no_library_wording(culprit)


def _refused_alone(raw: bytes) -> bool:
    try:
        decoding._single.decode(raw)
    except msgspec.ValidationError:
        return True
    return False


# Mostly valid values with their edges close by: the fast path decides the valid ones.
OLDEST = BUCKETS.oldest_accepted(NOW)
EDGES = st.sampled_from([math.nan, math.inf, -math.inf, -0.0])
TIMESTAMPS = (
    st.integers(min_value=OLDEST - 3, max_value=NOW + 63)
    | st.sampled_from([OLDEST, OLDEST - 1, NOW + 60, NOW + 61, NOW * 1000, 10**30, -1, True])
    | st.floats(min_value=OLDEST - 3, max_value=NOW + 63) | EDGES
)
LAB_IDS = (st.from_regex(r"[A-Za-z0-9/_.\-]{1,50}", fullmatch=True)
           | st.text(alphabet="ab/_.-:äZ9 \n", max_size=52)
           | st.sampled_from(["", "a" * 50, "a" * 51, "lab\n"]))
TEMPS = (st.floats(min_value=-274, max_value=1001) | EDGES
         | st.sampled_from([-273.15, 1000.0, -273.16, 1000.0001, 20]))
HUMIDITIES = (st.floats(min_value=-1, max_value=101) | EDGES
              | st.sampled_from([0.0, 100.0, -0.00001, 100.00001, 50]))
OBSERVATIONS = st.builds(Observation, lab_id=LAB_IDS, timestamp=TIMESTAMPS, temp=TEMPS,
                         humidity=HUMIDITIES)


@settings(max_examples=600, deadline=None)
@given(st.lists(OBSERVATIONS, min_size=1, max_size=5))
def test_the_batch_fast_path_accepts_and_rejects_exactly_what_validate_does(
    items: list[Observation],
) -> None:
    expected: list[tuple[Observation, int]] = []
    failure: tuple[int, ValidationFailure] | None = None
    for i, obs in enumerate(items):
        try:
            expected.append((obs, validate(obs, BUCKETS, NOW)))
        except ValidationFailure as exc:
            failure = (i, exc)
            break
    if failure is None:
        assert decoding._validate_all(items, BUCKETS, NOW, 100) == expected
        return
    with pytest.raises(ApiError) as err:
        decoding._validate_all(items, BUCKETS, NOW, 100)
    index, exc = failure
    assert (err.value.index, err.value.field, err.value.detail, err.value.reason) == (
        index, exc.field, exc.detail, exc.reason)
