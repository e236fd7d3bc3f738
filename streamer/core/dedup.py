"""Event-id dedup bounded by the window, on fixed-width 128-bit keys.

An event id becomes a 16-byte key: a UUID in its canonical form (36 characters, lower-case
hex, hyphens at 8-13-18-23) is stored exactly as its 16 bytes; any other id (upper-case UUIDs
included) as its blake2b digest of 16 bytes. Two different ids therefore share a key only if
a 128-bit digest collides: for n remembered ids the chance of any false duplicate is about
n^2 / 2^129 (about 1.5e-23 for 10^8 ids).

Keys live in a few sorted runs (a log-structured set: a new batch is a small run, runs of
similar size merge), each with the minute of its id, so a batch is looked up with a handful
of vectorised binary searches and a minute leaves with one filter pass per run. About 24
bytes per remembered id.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
Mask = npt.NDArray[np.bool_]
_CLASS = np.zeros(256, dtype=np.uint8)  # 1: lower-case hex digit, 2: hyphen, 0: anything else
_CLASS[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = 1
_CLASS[ord("-")] = 2
_UUID_PATTERN = np.array([2 if i in (8, 13, 18, 23) else 1 for i in range(36)], dtype=np.uint8)


_BLAKE2B_16 = hashlib.blake2b(digest_size=16)  # copied per id: ~2x cheaper than a new one


def _digests(event_ids: Sequence[str]) -> bytes:
    """The 16-byte blake2b digests of the ids (UTF-8, surrogates passed), concatenated."""
    copy = _BLAKE2B_16.copy
    out: list[bytes] = []
    keep = out.append
    for event_id in event_ids:
        hasher = copy()
        hasher.update(event_id.encode("utf-8", "surrogatepass"))
        keep(hasher.digest())
    return b"".join(out)


def _uuid_rows(event_ids: Sequence[str], rows: npt.NDArray[np.intp],
               raw: npt.NDArray[np.uint8]) -> npt.NDArray[np.bool_]:
    """Write the exact bytes of canonical UUIDs among `rows` (36-character ids); mark them."""
    sub = [event_ids[i] for i in rows.tolist()] if len(rows) != len(event_ids) else event_ids
    joined = "".join(sub)
    if not joined.isascii():
        ascii_rows = rows[np.fromiter(map(str.isascii, sub), dtype=np.bool_, count=len(sub))]
        return _uuid_rows(event_ids, ascii_rows, raw) if len(ascii_rows) < len(rows) else \
            np.zeros(len(event_ids), dtype=np.bool_)
    chars = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(len(rows), 36)
    ok = (np.take(_CLASS, chars) == _UUID_PATTERN).all(axis=1)
    hexes = joined if ok.all() else "".join([sub[i] for i in np.flatnonzero(ok).tolist()])
    raw[rows[ok]] = np.frombuffer(bytes.fromhex(hexes.replace("-", "")),
                                  dtype=np.uint8).reshape(-1, 16)
    is_uuid = np.zeros(len(event_ids), dtype=np.bool_)
    is_uuid[rows[ok]] = True
    return is_uuid


def event_keys(event_ids: Sequence[str]) -> tuple[U64, U64]:
    """(high, low) 64-bit halves of every id's 16-byte key (exact UUID bytes or a digest)."""
    n = len(event_ids)
    raw = np.empty((n, 16), dtype=np.uint8)
    if n:
        lengths = np.fromiter(map(len, event_ids), dtype=np.int64, count=n)
        rows = np.flatnonzero(lengths == 36)
        is_uuid = _uuid_rows(event_ids, rows, raw) if len(rows) else np.zeros(n, dtype=np.bool_)
        other = np.flatnonzero(~is_uuid)
        if len(other):
            ids = event_ids if len(other) == n else [event_ids[i] for i in other.tolist()]
            digests = _digests(ids)
            raw[other] = np.frombuffer(digests, dtype=np.uint8).reshape(-1, 16)
    halves = raw.view(np.uint64).reshape(n, 2)
    return halves[:, 0].copy(), halves[:, 1].copy()


def _groups(high: U64, low: U64) -> tuple[U64, U64, npt.NDArray[np.intp]]:
    """Distinct keys in (high, low) order, and the first position of each in the input.

    One sort of the high halves; only if two different keys share a high half (about
    n^2/2^65) the exact two-key sort is used instead.
    """
    order = np.argsort(high)
    h, lo = high[order], low[order]
    same_high = h[1:] == h[:-1]
    if (same_high & (lo[1:] != lo[:-1])).any():
        order = np.lexsort((low, high))
        h, lo = high[order], low[order]
        same_high = h[1:] == h[:-1]
    starts = np.flatnonzero(np.concatenate(([True], ~same_high | (lo[1:] != lo[:-1]))))
    first = np.minimum.reduceat(order, starts) if len(order) else order
    return h[starts], lo[starts], first


class _Run:
    """One sorted run: keys ordered by their high half, with each key's minute."""

    __slots__ = ("high", "low", "minutes")

    def __init__(self, high: U64, low: U64, minutes: npt.NDArray[np.int32] | npt.NDArray[np.int64],
                 ordered: bool = False) -> None:
        if ordered:
            self.high, self.low = high, low
            self.minutes = minutes.astype(np.int32, copy=False)
        else:
            order = np.argsort(high, kind="stable")
            self.high, self.low = high[order], low[order]
            self.minutes = minutes[order].astype(np.int32, copy=False)

    def __len__(self) -> int:
        return len(self.high)

    def contains(self, high: U64, low: U64) -> Mask:
        """Which (high, low) keys are in this run."""
        pos = np.searchsorted(self.high, high)
        at = np.minimum(pos, len(self.high) - 1)
        same_high = self.high[at] == high
        found = same_high & (self.low[at] == low)
        odd = np.flatnonzero(same_high & ~found)  # equal high halves: ~n^2/2^65, look further
        for i in odd.tolist():
            end = int(np.searchsorted(self.high, high[i], side="right"))
            found[i] = bool((self.low[int(pos[i]):end] == low[i]).any())
        return found  # type: ignore[no-any-return]

    def keep_from(self, minute: int) -> int:
        """Drop keys of minutes before `minute`; return how many were dropped."""
        live = self.minutes >= minute
        dropped = len(live) - int(live.sum())
        if dropped:
            self.high, self.low, self.minutes = self.high[live], self.low[live], self.minutes[live]
        return dropped


class DedupIndex:
    """Remembers event keys by event-time minute; forgets minutes that left the window."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: list[_Run] = []

    def __len__(self) -> int:
        return sum(len(r) for r in self._runs)

    def __contains__(self, event_id: str) -> bool:
        high, low = event_keys([event_id])
        return bool(self.seen(high, low)[0])

    def seen(self, high: U64, low: U64) -> Mask:
        """Which keys are already remembered."""
        found = np.zeros(len(high), dtype=np.bool_)
        if len(high):
            for run in self._runs:
                found |= run.contains(high, low)
        return found

    def add_batch(self, high: U64, low: U64, minutes: npt.NDArray[np.int64],
                  remember: Mask | None = None) -> Mask:
        """True where a key is new (its first occurrence, unseen); remember those new keys
        (only where `remember` is True, when given)."""
        n = len(high)
        fresh = np.zeros(n, dtype=np.bool_)
        if not n:
            return fresh
        h, lo, first = _groups(high, low)  # sorted needles: binary searches stay in cache
        new = np.ones(len(h), dtype=np.bool_)
        for run in self._runs:
            new &= ~run.contains(h, lo)
        keep = new if remember is None else new & remember[first]
        if keep.any():
            self._push(_Run(h[keep], lo[keep], minutes[first[keep]], ordered=True))
        fresh[first[new]] = True
        return fresh

    def add(self, event_id: str, minute: int) -> bool:
        """Record one id; False when it was already seen (a duplicate)."""
        high, low = event_keys([event_id])
        return bool(self.add_batch(high, low, np.array([minute], dtype=np.int64)).any())

    def expire_before(self, minute: int) -> int:
        """Forget keys of minutes older than `minute`; return how many were forgotten."""
        dropped = sum(run.keep_from(minute) for run in self._runs)
        self._runs = [r for r in self._runs if len(r)]
        return dropped

    def _push(self, run: _Run) -> None:
        runs = self._runs
        runs.append(run)
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            b, a = runs.pop(), runs.pop()
            runs.append(_Run(np.concatenate([a.high, b.high]), np.concatenate([a.low, b.low]),
                             np.concatenate([a.minutes, b.minutes])))
