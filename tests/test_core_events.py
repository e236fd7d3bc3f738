"""decode_message / validate_event: every bad-input class of the contract, and valid batches."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.events import (
    EVENT_TYPES,
    MAX_ID,
    Event,
    decode_message,
    encode_events,
    validate_event,
)
from streamer.errors import InvalidEvent

NOW = 1_795_913_777_000
FIVE_MIN = 5 * 60 * 1000


def good(**changes: Any) -> dict[str, Any]:
    """A valid event object, with some fields replaced."""
    obj: dict[str, Any] = {
        "event_id": "8f0c-1", "post_id": 123, "user_id": 456, "event_type": "like", "ts": NOW,
    }
    obj.update(changes)
    return obj


def reason_of(obj: object) -> str:
    """The reason validate_event gives for a bad event."""
    with pytest.raises(InvalidEvent) as info:
        validate_event(obj, NOW)
    return info.value.reason


def test_valid_event_round_trips() -> None:
    """A valid object becomes an Event whose wire form is the object."""
    ev = validate_event(good(), NOW)
    assert ev == Event("8f0c-1", 123, 456, "like", NOW)
    assert ev.to_dict() == good()
    assert ev.type_index == 1
    assert [Event("e", 1, 1, t, 0).type_index for t in EVENT_TYPES] == [0, 1, 2, 3]


def test_extra_fields_are_ignored() -> None:
    """Unknown extra keys do not make an event invalid."""
    assert validate_event(good(extra={"a": 1}), NOW).post_id == 123


@pytest.mark.parametrize("field", ["event_id", "post_id", "user_id", "event_type", "ts"])
def test_missing_field(field: str) -> None:
    """Every field is required."""
    obj = good()
    del obj[field]
    assert reason_of(obj) == "missing_field"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("event_id", 5), ("event_id", None), ("event_id", ["a"]),
        ("post_id", "123"), ("post_id", 1.0), ("post_id", True), ("post_id", None),
        ("user_id", "456"), ("user_id", False), ("user_id", 4.5), ("user_id", {"id": 1}),
        ("event_type", 1), ("event_type", None), ("event_type", ["like"]),
        ("ts", str(NOW)), ("ts", float(NOW)), ("ts", True), ("ts", None),
    ],
)
def test_mistyped_field(field: str, value: object) -> None:
    """Strings as ids, floats, bools as ints, nulls: all invalid_type."""
    assert reason_of(good(**{field: value})) == "invalid_type"


@pytest.mark.parametrize("field", ["post_id", "user_id"])
def test_id_range(field: str) -> None:
    """Ids are in 0 .. 2^63-1 inclusive."""
    assert validate_event(good(**{field: 0}), NOW).to_dict()[field] == 0
    assert validate_event(good(**{field: MAX_ID}), NOW).to_dict()[field] == MAX_ID
    assert reason_of(good(**{field: -1})) == "out_of_range"
    assert reason_of(good(**{field: MAX_ID + 1})) == "out_of_range"


def test_event_id_length_in_characters() -> None:
    """1-128 characters (not bytes)."""
    assert validate_event(good(event_id="x"), NOW).event_id == "x"
    assert validate_event(good(event_id="é" * 128), NOW).event_id == "é" * 128
    assert reason_of(good(event_id="")) == "out_of_range"
    assert reason_of(good(event_id="x" * 129)) == "out_of_range"


@pytest.mark.parametrize("kind", ["click", "View", "LIKE", "", "shares"])
def test_unknown_event_type(kind: str) -> None:
    """Only view, like, comment, share (exact spelling)."""
    assert reason_of(good(event_type=kind)) == "unknown_event_type"


def test_future_ts_boundary_is_exactly_five_minutes() -> None:
    """ts == now + 5 min is valid; one millisecond more is future_ts; old ts are valid here."""
    assert validate_event(good(ts=NOW + FIVE_MIN), NOW).ts_ms == NOW + FIVE_MIN
    assert reason_of(good(ts=NOW + FIVE_MIN + 1)) == "future_ts"
    assert validate_event(good(ts=0), NOW).ts_ms == 0


@pytest.mark.parametrize("value", [3, "x", None, [1], True])
def test_not_an_object(value: object) -> None:
    """A member that is not an object is not_an_object."""
    assert reason_of(value) == "not_an_object"


# ---- whole messages -----------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"{", b"not json", b"\xff\xfe", b"", b"{'a': 1}", b"[1,]", b"NaN"])
def test_not_json_dead_letters_the_original_bytes(raw: bytes) -> None:
    """Undecodable values go to the DLQ as they came, reason invalid_json."""
    out = decode_message(raw, NOW)
    assert out.events == []
    assert [(d.payload, d.reason) for d in out.dead] == [(raw, "invalid_json")]
    assert out.dead[0].header.startswith("invalid_json: ")


def test_missing_value_is_invalid_json() -> None:
    """A tombstone (no value) is dead-lettered as empty bytes."""
    out = decode_message(None, NOW)
    assert [(d.payload, d.reason) for d in out.dead] == [(b"", "invalid_json")]


@pytest.mark.parametrize("raw", [b"3", b'"text"', b"null", b"true", b"1.5"])
def test_json_that_is_not_an_object_or_array(raw: bytes) -> None:
    """Scalars are whole bad messages: original bytes, not_an_object."""
    out = decode_message(raw, NOW)
    assert out.events == []
    assert [(d.payload, d.reason) for d in out.dead] == [(raw, "not_an_object")]


def test_single_bad_object_dead_letters_original_bytes() -> None:
    """A bad single event keeps its original bytes (whitespace and all)."""
    raw = b'{ "event_id": "e1", "post_id": "7", "user_id": 1, "event_type": "like", "ts": 1 }'
    out = decode_message(raw, NOW)
    assert out.events == []
    assert [(d.payload, d.reason) for d in out.dead] == [(raw, "invalid_type")]


def test_batch_with_bad_members_dead_letters_each_member_as_json() -> None:
    """Valid members are kept in order; each bad one is its own dead letter with its JSON."""
    members: list[object] = [
        good(event_id="a"),
        5,
        good(event_id="b", post_id="9"),
        good(event_id="c", event_type="poke"),
        [good(event_id="nested")],
        good(event_id="d", ts=NOW + FIVE_MIN + 1),
        good(event_id="e", user_id=True),
        good(event_id="f", post_id=2),
    ]
    out = decode_message(orjson.dumps(members), NOW)
    assert [e.event_id for e in out.events] == ["a", "f"]
    assert [(orjson.loads(d.payload), d.reason) for d in out.dead] == [
        (5, "not_an_object"),
        (members[2], "invalid_type"),
        (members[3], "unknown_event_type"),
        (members[4], "not_an_object"),
        (members[5], "future_ts"),
        (members[6], "invalid_type"),
    ]


def test_empty_batch_is_nothing() -> None:
    """`[]` has no events and nothing to dead-letter."""
    out = decode_message(b"[]", NOW)
    assert out.events == [] and out.dead == []


events_strategy = st.builds(
    Event,
    st.text(min_size=1, max_size=128),
    st.integers(0, MAX_ID),
    st.integers(0, MAX_ID),
    st.sampled_from(EVENT_TYPES),
    st.integers(-(2**53), NOW + FIVE_MIN),
)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.lists(events_strategy, max_size=20))
def test_encode_decode_round_trip(events: list[Event]) -> None:
    """Any valid events survive encode_events -> decode_message unchanged."""
    out = decode_message(encode_events(events), NOW)
    assert out.events == events
    assert out.dead == []


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(events_strategy)
def test_single_object_round_trip(event: Event) -> None:
    """A single event object decodes to itself."""
    out = decode_message(orjson.dumps(event.to_dict()), NOW)
    assert out.events == [event]
