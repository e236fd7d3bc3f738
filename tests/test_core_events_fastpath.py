"""The msgspec fast path of the decoder gives exactly the slow path's result."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.events import Decoded, decode_batch, decode_message

NOW_MS = 1_795_913_777_000

_ids = st.one_of(
    st.integers(min_value=-5, max_value=2**64 + 5), st.booleans(), st.text(max_size=3),
    st.floats(allow_nan=False, allow_infinity=False), st.none(),
)
_field_values: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.one_of(st.text(min_size=0, max_size=130), st.integers(), st.none()),
    "post_id": _ids,
    "user_id": _ids,
    "event_type": st.one_of(st.sampled_from(["view", "like", "comment", "share", "View", ""]),
                            st.integers()),
    "ts": st.one_of(
        st.integers(min_value=NOW_MS - 10**9, max_value=NOW_MS + 600_000), st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3),
    ),
}
_valid_values: dict[str, st.SearchStrategy[Any]] = {
    "event_id": st.text(min_size=1, max_size=128),
    "post_id": st.integers(min_value=0, max_value=2**63 - 1),
    "user_id": st.integers(min_value=0, max_value=2**63 - 1),
    "event_type": st.sampled_from(["view", "like", "comment", "share"]),
    "ts": st.integers(min_value=NOW_MS - 10**9, max_value=NOW_MS + 300_000),
}


@st.composite
def events(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly valid events, with each field sometimes missing or of a wrong type."""
    out: dict[str, Any] = {}
    for name in _valid_values:
        roll = draw(st.integers(0, 9))
        if roll == 0:
            continue
        out[name] = draw(_field_values[name] if roll == 1 else _valid_values[name])
    if draw(st.booleans()):
        out["extra"] = draw(st.integers())
    return out


messages = st.one_of(events(), st.lists(events(), max_size=6), st.integers(), st.text(max_size=5))


def decode_message_fast(raw: bytes | None, now_ms: int) -> Decoded:
    """One message through the worker's batch decoder (C fast path, slow path on rejection)."""
    cols, dead = decode_batch([raw], now_ms)
    return Decoded(cols.events(), dead)


class TestFastPathEquivalence:
    """The C fast path of decode_batch is a pure speed-up of decode_message."""

    @settings(max_examples=400, deadline=None)
    @given(messages)
    def test_same_events_and_dead_letters_as_slow_path(self, doc: object) -> None:
        """Any JSON message decodes to the same events and dead letters on both paths."""
        raw = orjson.dumps(doc, option=orjson.OPT_PASSTHROUGH_DATACLASS) if _encodable(doc) else b"x"
        assert decode_message_fast(raw, NOW_MS) == decode_message(raw, NOW_MS)

    def test_non_json_and_empty_take_the_slow_path(self) -> None:
        """Garbage and empty values become invalid_json dead letters."""
        for raw in (b"", b"\xff\xfe", b"{", None):
            fast = decode_message_fast(raw, NOW_MS)
            assert fast == decode_message(raw, NOW_MS)
            assert [d.reason for d in fast.dead] == ["invalid_json"]

    def test_future_event_in_batch_becomes_one_dead_letter(self) -> None:
        """A future member falls back to the slow path: only that member is dead."""
        good = {"event_id": "a", "post_id": 1, "user_id": 2, "event_type": "like", "ts": NOW_MS}
        bad = dict(good, event_id="b", ts=NOW_MS + 300_001)
        fast = decode_message_fast(orjson.dumps([good, bad]), NOW_MS)
        assert [e.event_id for e in fast.events] == ["a"]
        assert [d.reason for d in fast.dead] == ["future_ts"]


def _encodable(doc: object) -> bool:
    try:
        orjson.dumps(doc)
    except TypeError:
        return False
    return True


class TestColumnarBatch:
    """decode_batch gives, as columns, what decode_message gives message by message."""

    @settings(max_examples=300, deadline=None)
    @given(st.lists(messages, max_size=6))
    def test_same_events_dead_letters_and_order(self, docs: list[object]) -> None:
        """Events (with the message each came from) and dead letters, in order."""
        raws = [orjson.dumps(d) if _encodable(d) else b"x" for d in docs]
        cols, dead = decode_batch(raws, NOW_MS)
        want_events = []
        want_dead = []
        want_message = []
        for i, raw in enumerate(raws):
            one = decode_message(raw, NOW_MS)
            want_events.extend(one.events)
            want_dead.extend(one.dead)
            want_message.extend([i] * len(one.events))
        assert cols.events() == want_events
        assert dead == want_dead
        assert cols.message.tolist() == want_message
        assert len(cols) == len(want_events)

    def test_future_event_beside_rejected_messages_keeps_the_order(self) -> None:
        """A batch decoded again for a future event keeps every other message's dead letters
        and events where they were."""
        good = {"event_id": "a", "post_id": 1, "user_id": 2, "event_type": "like", "ts": NOW_MS}
        future = dict(good, event_id="f", ts=NOW_MS + 300_001)
        raws = [b"nope", orjson.dumps([good, future]), orjson.dumps(dict(good, event_type="x")),
                orjson.dumps(dict(good, event_id="c")), orjson.dumps(future)]
        cols, dead = decode_batch(raws, NOW_MS)
        ones = [decode_message(raw, NOW_MS) for raw in raws]
        assert dead == [d for one in ones for d in one.dead]
        assert [d.reason for d in dead] == ["invalid_json", "future_ts", "unknown_event_type",
                                            "future_ts"]
        assert cols.events() == [e for one in ones for e in one.events]
        assert cols.message.tolist() == [1, 3]
