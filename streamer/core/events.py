"""Decode and validate engagement events exactly as the contract says."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import orjson

from streamer.errors import InvalidEvent

EVENT_TYPES: tuple[str, ...] = ("view", "like", "comment", "share")
EVENT_TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}
MAX_ID = 2**63 - 1
MAX_EVENT_ID_CHARS = 128
FUTURE_TOLERANCE_MS = 5 * 60 * 1000
_FIELDS = ("event_id", "post_id", "user_id", "event_type", "ts")


@dataclass(frozen=True, slots=True)
class Event:
    """One valid engagement event."""

    event_id: str
    post_id: int
    user_id: int
    event_type: str
    ts_ms: int

    @property
    def type_index(self) -> int:
        """Index of the event type in (view, like, comment, share)."""
        return EVENT_TYPE_INDEX[self.event_type]

    def to_dict(self) -> dict[str, Any]:
        """The wire form of the event."""
        return {
            "event_id": self.event_id,
            "post_id": self.post_id,
            "user_id": self.user_id,
            "event_type": self.event_type,
            "ts": self.ts_ms,
        }


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What goes to the DLQ: the bytes to write and the reason for the `error` header."""

    payload: bytes
    reason: str
    detail: str

    @property
    def header(self) -> str:
        """Value of the `error` header."""
        return f"{self.reason}: {self.detail}"


@dataclass(slots=True)
class Decoded:
    """Result of decoding one Kafka message."""

    events: list[Event]
    dead: list[DeadLetter]


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_id(obj: dict[str, Any], name: str) -> int:
    value = obj[name]
    if not _is_int(value):
        raise InvalidEvent("invalid_type", f"{name} must be an integer")
    if not 0 <= value <= MAX_ID:
        raise InvalidEvent("out_of_range", f"{name} must be in 0..2^63-1")
    return int(value)


def validate_event(obj: object, now_ms: int) -> Event:
    """Turn one decoded JSON value into an Event or raise InvalidEvent with a reason."""
    if not isinstance(obj, dict):
        raise InvalidEvent("not_an_object", "event must be a JSON object")
    for name in _FIELDS:
        if name not in obj:
            raise InvalidEvent("missing_field", f"{name} is missing")
    event_id = obj["event_id"]
    if not isinstance(event_id, str):
        raise InvalidEvent("invalid_type", "event_id must be a string")
    if not 1 <= len(event_id) <= MAX_EVENT_ID_CHARS:
        raise InvalidEvent("out_of_range", "event_id must have 1-128 characters")
    post_id = _check_id(obj, "post_id")
    user_id = _check_id(obj, "user_id")
    event_type = obj["event_type"]
    if not isinstance(event_type, str):
        raise InvalidEvent("invalid_type", "event_type must be a string")
    if event_type not in EVENT_TYPE_INDEX:
        raise InvalidEvent("unknown_event_type", f"event_type {event_type[:32]!r} is unknown")
    ts = obj["ts"]
    if not _is_int(ts):
        raise InvalidEvent("invalid_type", "ts must be an integer (epoch milliseconds)")
    if ts > now_ms + FUTURE_TOLERANCE_MS:
        raise InvalidEvent("future_ts", "ts is more than 5 minutes in the future")
    return Event(event_id, post_id, user_id, event_type, int(ts))


def decode_message(value: bytes | None, now_ms: int) -> Decoded:
    """Decode one message (an event or a JSON array of events) into valid and dead events."""
    try:
        doc = orjson.loads(value if value is not None else b"")
    except orjson.JSONDecodeError:
        return Decoded([], [DeadLetter(value or b"", "invalid_json", "value is not UTF-8 JSON")])
    if isinstance(doc, dict):
        try:
            return Decoded([validate_event(doc, now_ms)], [])
        except InvalidEvent as exc:
            return Decoded([], [DeadLetter(value or b"", exc.reason, exc.detail)])
    if not isinstance(doc, list):
        detail = "value must be an event object or an array of event objects"
        return Decoded([], [DeadLetter(value or b"", "not_an_object", detail)])
    out = Decoded([], [])
    for member in doc:
        try:
            out.events.append(validate_event(member, now_ms))
        except InvalidEvent as exc:
            out.dead.append(DeadLetter(orjson.dumps(member), exc.reason, exc.detail))
    return out


class _WireEvent(msgspec.Struct, frozen=True, gc=False):
    """Strict wire schema for the fast path; anything it rejects takes the precise slow path."""

    event_id: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_EVENT_ID_CHARS)]
    post_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
    user_id: Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]
    event_type: Literal["view", "like", "comment", "share"]
    ts: int


_FAST = msgspec.json.Decoder(_WireEvent | list[_WireEvent])


def encode_events(events: list[Event]) -> bytes:
    """Encode events as a JSON array (a batch message)."""
    return orjson.dumps([e.to_dict() for e in events])


@dataclass(slots=True)
class Columns:
    """Valid events of a batch as parallel columns (the hot path never builds an Event)."""

    event_ids: list[str]
    post_ids: npt.NDArray[np.int64]
    user_ids: npt.NDArray[np.int64]
    types: npt.NDArray[np.uint8]
    ts_ms: npt.NDArray[np.int64]
    message: npt.NDArray[np.int64]  # index of the message (in the decoded batch) of each event

    def __len__(self) -> int:
        return len(self.event_ids)

    def take(self, index: npt.NDArray[np.intp]) -> Columns:
        """The events at these positions, in this order."""
        ids = self.event_ids
        return Columns([ids[i] for i in index.tolist()], self.post_ids[index],
                       self.user_ids[index], self.types[index], self.ts_ms[index],
                       self.message[index])

    def events(self) -> list[Event]:
        """The columns as Event objects (for callers off the hot path)."""
        kinds = [EVENT_TYPES[t] for t in self.types.tolist()]
        return list(map(Event, self.event_ids, self.post_ids.tolist(), self.user_ids.tolist(),
                        kinds, self.ts_ms.tolist()))

    def encode_one(self, i: int) -> bytes:
        """Event i as the JSON object of a single-event message (a forward)."""
        return _ENCODER.encode(_wire(
            self.event_ids[i], int(self.post_ids[i]), int(self.user_ids[i]),
            EVENT_TYPES[int(self.types[i])], int(self.ts_ms[i])))


_ENCODER = msgspec.json.Encoder()
_ID_OF = attrgetter("event_id")
_POST_OF = attrgetter("post_id")
_USER_OF = attrgetter("user_id")
_KIND_OF = attrgetter("event_type")
_TYPE_OF = EVENT_TYPE_INDEX.__getitem__
_TS_OF = attrgetter("ts")


def _wire(event_id: str, post_id: int, user_id: int, event_type: str, ts_ms: int) -> _WireEvent:
    """A wire struct from validated fields (event_type is one of EVENT_TYPES)."""
    return _WireEvent(event_id, post_id, user_id, event_type, ts_ms)  # type: ignore[arg-type]


def _wires_of(events: list[Event]) -> list[_WireEvent]:
    return [_wire(e.event_id, e.post_id, e.user_id, e.event_type, e.ts_ms) for e in events]


def _columns(wires: list[_WireEvent], ends: list[int]) -> Columns:
    """One pass per column straight into arrays: no per-event tuple for the collector to walk."""
    n = len(wires)
    bounds = np.array(ends, dtype=np.int64)
    message = np.repeat(np.arange(len(ends), dtype=np.int64), np.diff(bounds, prepend=0))
    return Columns(
        list(map(_ID_OF, wires)),
        np.fromiter(map(_POST_OF, wires), dtype=np.int64, count=n),
        np.fromiter(map(_USER_OF, wires), dtype=np.int64, count=n),
        np.fromiter(map(_TYPE_OF, map(_KIND_OF, wires)), dtype=np.uint8, count=n),
        np.fromiter(map(_TS_OF, wires), dtype=np.int64, count=n),
        message,
    )


def decode_batch(values: Sequence[bytes | None], now_ms: int) -> tuple[Columns, list[DeadLetter]]:
    """Decode many messages into one set of columns plus their dead letters.

    Same events and dead letters, in the same order, as decode_message on each value: entirely
    valid messages are decoded in C; any message the strict schema rejects is decoded again by
    the precise slow path, and so is any with a future event (found on the ts column at once).
    """
    wires: list[_WireEvent] = []
    ends: list[int] = []  # len(wires) after each message
    dead: dict[int, list[DeadLetter]] = {}  # message index -> its dead letters (slow path)
    decode = _FAST.decode
    for i, value in enumerate(values):
        try:
            doc = decode(value) if value else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            doc = None
        if doc is None:
            slow = decode_message(value, now_ms)
            if slow.dead:
                dead[i] = slow.dead
            wires.extend(_wires_of(slow.events))
        elif type(doc) is list:
            wires.extend(doc)
        else:
            wires.append(doc)  # type: ignore[arg-type]
        ends.append(len(wires))
    cols = _columns(wires, ends)
    future = cols.ts_ms > now_ms + FUTURE_TOLERANCE_MS
    if future.any():  # rare: those messages again, through the slow path
        return _redo(values, now_ms, wires, ends, dead, set(cols.message[future].tolist()))
    return cols, [d for i in sorted(dead) for d in dead[i]]


def _redo(values: Sequence[bytes | None], now_ms: int, wires: list[_WireEvent], ends: list[int],
          dead: dict[int, list[DeadLetter]], again: set[int]) -> tuple[Columns, list[DeadLetter]]:
    """The batch with the messages `again` decoded by the slow path, the others as they were."""
    out: list[_WireEvent] = []
    out_ends: list[int] = []
    out_dead: list[DeadLetter] = []
    for i, value in enumerate(values):
        if i in again:
            slow = decode_message(value, now_ms)
            out_dead.extend(slow.dead)
            out.extend(_wires_of(slow.events))
        else:
            out_dead.extend(dead.get(i, ()))
            out.extend(wires[ends[i - 1] if i else 0:ends[i]])
        out_ends.append(len(out))
    return _columns(out, out_ends), out_dead
