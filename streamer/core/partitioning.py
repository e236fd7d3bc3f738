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


def _packed(width: int) -> npt.NDArray[np.uint32]:
    """For every value below 10^width: its zero-padded decimal digits as little-endian bytes."""
    values = np.arange(10**width, dtype=np.uint32)
    out = np.zeros(10**width, dtype=np.uint32)
    for pos in range(width):
        digit = values // np.uint32(10 ** (width - 1 - pos)) % np.uint32(10) + _DIGIT
        out |= digit << np.uint32(8 * pos)
    return out


_WORDS = _packed(4)  # four decimal digits -> the 32-bit word murmur2 reads from them
_TAILS = [np.zeros(1, dtype=np.uint32), _packed(1), _packed(2), _packed(3)]


def _split(values: npt.NDArray[np.uint64], unit: int
           ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.intp]]:
    """values // unit and values % unit (as an index); a multiply-subtract is ~8x cheaper than %."""
    high = values // np.uint64(unit)
    return high, (values - high * np.uint64(unit)).astype(np.intp)


def _murmur2_decimal(values: npt.NDArray[np.uint64], length: int) -> npt.NDArray[np.uint32]:
    """murmur2 of the decimal strings of values that all have `length` digits: four digits at
    a time through a table of their 32-bit words (what murmur2 reads), not digit by digit."""
    words, extra = divmod(length, 4)
    rest, tail = _split(values, 10**extra)
    quads = []
    for _ in range(words):  # from the right: the last full word first
        rest, quad = _split(rest, 10_000)
        quads.append(_WORDS[quad])
    h = np.full(len(values), (_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
    with np.errstate(over="ignore"):
        for k in reversed(quads):
            k = k * _M
            k ^= k >> np.uint32(24)
            k = k * _M
            h = (h * _M) ^ k
        if extra:
            h ^= _TAILS[extra][tail]
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
    lengths = np.searchsorted(_BOUNDS, values, side="right").astype(np.uint8)  # digits - 1
    counts = np.bincount(lengths)
    if np.count_nonzero(counts) == 1:
        h = _murmur2_decimal(values, int(lengths[0]) + 1)
        return (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    order = np.argsort(lengths, kind="stable")  # one radix sort: each length a slice
    ordered = values[order]
    start = 0
    for index, count in enumerate(counts.tolist()):
        if count:
            part = slice(start, start + count)
            h = _murmur2_decimal(ordered[part], index + 1)
            out[order[part]] = (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
            start += count
    return out


@functools.lru_cache(maxsize=1 << 16)
def partition_for_post(post_id: int, partitions: int) -> int:
    """Partition of one post (for the few callers outside the hot path)."""
    return int(_murmur2_scalar(post_key(post_id)) & 0x7FFFFFFF) % partitions
