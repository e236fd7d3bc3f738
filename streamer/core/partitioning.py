"""Where a post's events belong: Kafka's default partitioner (murmur2 of str(post_id)).

`partitions_of` computes it for a whole column of post ids at once (numpy, grouped by the
number of decimal digits), so the hot path never calls the pure-Python murmur2 per event.
"""

from __future__ import annotations

import functools

import numpy as np
import numpy.typing as npt

_SEED = 0x9747B28C
_M = np.uint32(0x5BD1E995)
_DIGIT = np.uint32(ord("0"))
_S8, _S16, _S24 = np.uint32(8), np.uint32(16), np.uint32(24)
_POW10 = [10**i for i in range(20)]
_BOUNDS = np.array(_POW10[1:], dtype=np.uint64)  # digits of v = 1 + how many of these are <= v


def post_key(post_id: int) -> bytes:
    """The contract's message key: the post_id as a decimal UTF-8 string."""
    return str(post_id).encode()


def _murmur2_scalar(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2) of one key, unsigned."""
    h = _murmur2_columns(np.frombuffer(data, dtype=np.uint8).astype(np.uint32)[None, :])
    return int(h[0])


def _murmur2_columns(digits: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """murmur2 of n keys of equal length L, given as an (n, L) array of byte values."""
    n, length = digits.shape
    h = np.full(n, (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i in range(0, length - length % 4, 4):
            k = digits[:, i] | (digits[:, i + 1] << _S8) | (digits[:, i + 2] << _S16) | (
                digits[:, i + 3] << _S24)
            k = k * _M
            k ^= k >> np.uint32(24)
            k = k * _M
            h = (h * _M) ^ k
        tail = length & ~3
        extra = length % 4
        if extra >= 3:
            h ^= digits[:, tail + 2] << _S16
        if extra >= 2:
            h ^= digits[:, tail + 1] << _S8
        if extra >= 1:
            h ^= digits[:, tail]
            h = h * _M
        h ^= h >> np.uint32(13)
        h = h * _M
        h ^= h >> np.uint32(15)
    return h


def partitions_of(post_ids: npt.NDArray[np.int64], partitions: int) -> npt.NDArray[np.int64]:
    """Partition of every post id (0..2^63-1) of a column, as the default partitioner picks."""
    out = np.empty(len(post_ids), dtype=np.int64)
    if not len(post_ids):
        return out
    values = post_ids.astype(np.uint64)
    lengths = np.searchsorted(_BOUNDS, values, side="right")
    lengths += 1
    for length in np.unique(lengths).tolist():
        sel = np.flatnonzero(lengths == length)
        group = values[sel]
        digits = np.empty((len(sel), length), dtype=np.uint32)
        for pos in range(length):
            place = np.uint64(_POW10[length - 1 - pos])
            digits[:, pos] = ((group // place) % np.uint64(10)).astype(np.uint32) + _DIGIT
        h = _murmur2_columns(digits)
        out[sel] = (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    return out


@functools.lru_cache(maxsize=1 << 16)
def partition_for_post(post_id: int, partitions: int) -> int:
    """Partition of one post (for the few callers outside the hot path)."""
    return int(_murmur2_scalar(post_key(post_id)) & 0x7FFFFFFF) % partitions
