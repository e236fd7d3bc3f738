"""Change records: the accepted events of one batch, packed, one changelog message each.

Format version 2 (little-endian), about 19-20 bytes per event:

    byte 0        version (2)
    header        events n (u32), first minute (i64), last minute (i64),
                  minute width w (u8: 1, 2 or 4), post-delta width d (u8: 1, 2, 4 or 8)
    n x 16        event keys (streamer.core.dedup.event_keys), in post order
    n x w         minute - first minute
    ceil(n/4)     event types, 2 bits each
    n x d         post ids, sorted: first absolute, then differences to the previous one

Format version 3 is version 2 with one more header byte, the account width u (u8: 1, 2, 4 or
8), and after the post ids `n x u` account ids plus one (0: unknown), in post order: what
counting people (streamer.core.people) rebuilds from. Versions 1 and 2 are still read, their
accounts unknown.

Version 1 records (JSON objects, from before this format) are still read, so a changelog
written by an older worker rebuilds the same state; new records are version 3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streamer.core.dedup import U64, event_keys

I64 = npt.NDArray[np.int64]
VERSION = 3
_HEADER = struct.Struct("<BIqqBB")
_HEADER3 = struct.Struct("<BIqqBBB")
UNKNOWN_USER = -1  # the account of an event from a record that did not carry it
_WIDTHS = tuple(np.dtype(f"<u{n}") for n in (1, 2, 4, 8))  # little-endian, as the header


def record_key(partition: int, writer: str, seq: int) -> bytes:
    """Table key of a record: partition first (found by prefix), then a per-incarnation writer
    id so two owners of a partition (e.g. a zombie during a rebalance) never overwrite each other."""
    return b"%d:%s:%012d" % (partition, writer.encode(), seq)


def parse_record_key(key: bytes) -> int:
    """Partition of a record key."""
    return int(key.split(b":", 1)[0])


@dataclass(slots=True)
class RecordColumns:
    """The events of one or more records as columns."""

    high: U64
    low: U64
    post_ids: I64
    types: npt.NDArray[np.uint8]
    minutes: I64
    users: I64 | None = None  # None: every account unknown

    def __len__(self) -> int:
        return len(self.post_ids)


def _width(max_value: int) -> np.dtype[Any]:
    for dtype in _WIDTHS:
        if max_value <= np.iinfo(dtype).max:
            return dtype
    raise ValueError("value does not fit 64 bits")


def encode_record(cols: RecordColumns) -> bytes:
    """One record's value (n >= 1 events): version 3 when accounts are known, else 2."""
    n = len(cols)
    order = np.argsort(cols.post_ids, kind="stable")
    posts = cols.post_ids[order].astype(np.uint64)
    deltas = np.empty(n, dtype=np.uint64)
    deltas[0] = posts[0]
    deltas[1:] = posts[1:] - posts[:-1]
    first, last = int(cols.minutes.min()), int(cols.minutes.max())
    minute_type = _width(last - first)
    delta_type = _width(int(deltas.max()))
    keys = np.empty((n, 2), dtype=np.uint64)
    keys[:, 0], keys[:, 1] = cols.high[order], cols.low[order]
    types = np.zeros((n + 3) // 4 * 4, dtype=np.uint8)
    types[:n] = cols.types[order]
    packed = types[0::4] | (types[1::4] << 2) | (types[2::4] << 4) | (types[3::4] << 6)
    body = [keys.tobytes(), (cols.minutes[order] - first).astype(minute_type).tobytes(),
            packed.tobytes(), deltas.astype(delta_type).tobytes()]
    widths = (np.dtype(minute_type).itemsize, np.dtype(delta_type).itemsize)
    if cols.users is None:
        return b"".join((_HEADER.pack(2, n, first, last, *widths), *body))
    users = (cols.users[order] + 1).astype(np.uint64)
    user_type = _width(int(users.max()))
    header = _HEADER3.pack(VERSION, n, first, last, *widths, np.dtype(user_type).itemsize)
    return b"".join((header, *body, users.astype(user_type).tobytes()))


def record_span(value: bytes) -> tuple[int, int]:
    """(first, last) minute a record touches, from its header alone."""
    if value[:1] not in (b"\x02", b"\x03"):
        cols = decode_record(value)
        return int(cols.minutes.min()), int(cols.minutes.max())
    _, _, first, last, _, _ = _HEADER.unpack_from(value)
    return int(first), int(last)


def decode_record(value: bytes) -> RecordColumns:
    """The events of one record (version 3 or 2, or a version 1 JSON record)."""
    if value[:1] not in (b"\x02", b"\x03"):
        return _decode_json(value)
    v3 = value[:1] == b"\x03"
    _, n, first, _, w, d, *u = (_HEADER3 if v3 else _HEADER).unpack_from(value)
    at = (_HEADER3 if v3 else _HEADER).size
    keys = np.frombuffer(value, dtype=np.uint64, count=2 * n, offset=at).reshape(n, 2)
    at += 16 * n
    minutes = np.frombuffer(value, dtype=_WIDTHS[(1, 2, 4, 8).index(w)], count=n, offset=at)
    at += w * n
    packed = np.frombuffer(value, dtype=np.uint8, count=(n + 3) // 4, offset=at)
    at += (n + 3) // 4
    deltas = np.frombuffer(value, dtype=_WIDTHS[(1, 2, 4, 8).index(d)], count=n, offset=at)
    types = np.empty((len(packed), 4), dtype=np.uint8)
    for i in range(4):
        types[:, i] = (packed >> (2 * i)) & 3
    posts = np.cumsum(deltas.astype(np.uint64), dtype=np.uint64).astype(np.int64)
    users = None
    if v3:
        at += d * n
        raw = np.frombuffer(value, dtype=_WIDTHS[(1, 2, 4, 8).index(u[0])], count=n, offset=at)
        users = raw.astype(np.uint64).astype(np.int64) - 1
    return RecordColumns(keys[:, 0], keys[:, 1], posts, types.reshape(-1)[:n],
                         minutes.astype(np.int64) + first, users)


def _decode_json(value: bytes) -> RecordColumns:
    """A version 1 record: {"ids": {minute: [id]}, "p": {minute: [post]}, "t": {minute: "0123"}}."""
    doc = orjson.loads(value)
    ids: list[str] = []
    posts: list[int] = []
    types: list[int] = []
    minutes: list[int] = []
    for minute_s, minute_ids in doc["ids"].items():
        ids.extend(minute_ids)
        posts.extend(doc["p"][minute_s])
        types.extend(int(c) for c in doc["t"][minute_s])
        minutes.extend([int(minute_s)] * len(minute_ids))
    high, low = event_keys(ids)
    return RecordColumns(high, low, np.array(posts, dtype=np.int64),
                         np.array(types, dtype=np.uint8), np.array(minutes, dtype=np.int64))


def concat(parts: list[RecordColumns]) -> RecordColumns:
    """Columns of several records, in order."""
    if not parts:
        e = np.empty(0, dtype=np.int64)
        return RecordColumns(e.astype(np.uint64), e.astype(np.uint64), e, e.astype(np.uint8), e)
    users = None
    if any(p.users is not None for p in parts):
        users = np.concatenate([p.users if p.users is not None else
                                np.full(len(p), UNKNOWN_USER, dtype=np.int64) for p in parts])
    col = {f: np.concatenate([getattr(p, f) for p in parts])
           for f in ("high", "low", "post_ids", "types", "minutes")}
    return RecordColumns(col["high"], col["low"], col["post_ids"], col["types"], col["minutes"],
                         users)


def users_of(cols: RecordColumns) -> I64:
    """Accounts of the events, UNKNOWN_USER where a record did not carry them."""
    if cols.users is None:
        return np.full(len(cols), UNKNOWN_USER, dtype=np.int64)
    return cols.users
