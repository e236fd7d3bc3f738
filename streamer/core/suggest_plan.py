"""Planning a suggestions run: what changed since the last successful one, and the shards.

A user's list depends on F(u), on F(f) for every f in F(u) (candidates, and |F(f)| in the
Adamic-Adar weight), and on the accounts in a block with u (either way). So after the current
follows of a set C of accounts changed (new follows, unfollows, re-follows), the users in C and
the current followers of accounts in C can have a different list; after a block or unblock,
both accounts can; with the popular fallback, so can every user whose list was topped up
(the popular order moves with any follow). Everyone else's value is unchanged. Follows and
blocks are compared by a 64-bit hash of each account's sorted current set, so a change is
missed only on a hash collision (about 2^-64 per changed account); a full run every
JOB_SUGGESTION_FULL_EVERY runs bounds even that.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

_HEADER_END = b"\n"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a run saw when it was planned: follows and blocks fingerprints, active users,
    parameters."""

    fingerprints: Mapping[int, int]
    active: frozenset[int]
    params: str
    blocks: Mapping[int, int] = field(default_factory=dict)


def run_params(per_user: int, degree_cap: int, fallback: str = "none") -> str:
    """Settings that change every value: a change forces a full run."""
    return f"per_user={per_user};cap={degree_cap};fallback={fallback}"


def _u64(values: Iterable[int]) -> bytes:
    arr = array("Q", values)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tobytes()


def _from_u64(raw: bytes) -> list[int]:
    arr = array("Q")
    arr.frombytes(raw)
    if sys.byteorder != "little":
        arr.byteswap()
    return arr.tolist()


def encode_snapshot(snap: Snapshot) -> bytes:
    """Compact bytes: a JSON header line, then little-endian uint64 arrays."""
    ids, blocked = list(snap.fingerprints), list(snap.blocks)
    header = orjson.dumps({"params": snap.params, "accounts": len(ids), "active": len(snap.active),
                           "blocks": len(blocked)})
    body = (_u64(ids) + _u64(snap.fingerprints[i] for i in ids) + _u64(sorted(snap.active))
            + _u64(blocked) + _u64(snap.blocks[i] for i in blocked))
    return header + _HEADER_END + body


def decode_snapshot(raw: bytes) -> Snapshot:
    """Inverse of encode_snapshot."""
    head, _, body = raw.partition(_HEADER_END)
    meta = orjson.loads(head)
    n, m, b = int(meta["accounts"]), int(meta["active"]), int(meta.get("blocks", 0))
    values = _from_u64(body)
    if len(values) != 2 * n + m + 2 * b:
        raise ValueError("suggestions snapshot is truncated")
    fingerprints = dict(zip(values[:n], values[n : 2 * n], strict=True))
    rest = 2 * n + m
    blocks = dict(zip(values[rest : rest + b], values[rest + b :], strict=True))
    return Snapshot(fingerprints, frozenset(values[2 * n : rest]), str(meta["params"]), blocks)


def changed_accounts(before: Mapping[int, int], after: Mapping[int, int]) -> set[int]:
    """Accounts whose follows differ (added, changed or gone)."""
    out = {a for a, h in after.items() if before.get(a) != h}
    out.update(a for a in before if a not in after)
    return out


def recompute_set(
    active: Iterable[int], previous: Snapshot, changed: Collection[int], followers: Collection[int],
    also: Collection[int] = (),
) -> set[int]:
    """Active users whose list can differ from the last successful run's (`also`: accounts in a
    changed block, users topped up from the popular list)."""
    return {
        u for u in active
        if u in changed or u in followers or u in also or u not in previous.active
    }


def split_shards(users: Sequence[int], shards: int) -> list[list[int]]:
    """Contiguous slices of the priority order: shard 0 holds the most active users."""
    count = max(1, min(shards, len(users)))
    size, extra = divmod(len(users), count)
    out: list[list[int]] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        out.append(list(users[start:end]))
        start = end
    return out


def encode_shard(users: Sequence[int], recompute: Collection[int]) -> bytes:
    """A shard's users in order, then one byte per user: 1 = recompute, 0 = renew."""
    flags = bytes(1 if u in recompute else 0 for u in users)
    return _u64([len(users)]) + _u64(users) + flags


def decode_shard(raw: bytes) -> list[tuple[int, bool]]:
    """Inverse of encode_shard: (user, recompute) in priority order."""
    (n,) = _from_u64(raw[:8])
    users = _from_u64(raw[8 : 8 + 8 * n])
    flags = raw[8 + 8 * n :]
    if len(users) != n or len(flags) != n:
        raise ValueError("suggestions shard plan is truncated")
    return [(u, bool(f)) for u, f in zip(users, flags, strict=True)]
