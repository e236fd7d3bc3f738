"""The numpy post -> slot table answers exactly as a dict does, through inserts, deletes and
rebuilds (tombstones, collisions in one batch, negative and extreme ids)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.post_index import PostIndex

_GOLDEN = 0x9E3779B97F4A7C15
# ids whose home bucket in the first table (1,024 buckets) is one of the last two or the first:
# batches of them race for buckets and probe across the table's end
_CROWDED = [i for i in range(200_000) if (i * _GOLDEN % 2**64) >> 54 in (1022, 1023, 0)]
_IDS = st.one_of(st.integers(0, 50), st.integers(-(2**63), 2**63 - 1), st.sampled_from(_CROWDED))
_OPS = st.lists(st.tuples(st.booleans(), st.lists(_IDS, max_size=40)), max_size=40)


def _check(index: PostIndex, oracle: dict[int, int], probe: list[int]) -> None:
    ids = np.array(probe + list(oracle), dtype=np.int64)
    want = [oracle.get(p, -1) for p in ids.tolist()]
    assert index.lookup(ids).tolist() == want
    assert len(index) == len(oracle)
    assert all(index.get(p) == oracle.get(p) for p in probe)


@settings(max_examples=300, deadline=None)
@given(_OPS)
def test_matches_a_dict(ops: list[tuple[bool, list[int]]]) -> None:
    index, oracle, next_slot = PostIndex(), dict[int, int](), 0
    for is_insert, ids in ops:
        if is_insert:
            new = list(dict.fromkeys(p for p in ids if p not in oracle))
            slots = np.arange(next_slot, next_slot + len(new), dtype=np.int32)
            index.insert(np.array(new, dtype=np.int64), slots)
            oracle.update(zip(new, slots.tolist(), strict=True))
            next_slot += len(new)
        else:
            index.delete(np.array(ids, dtype=np.int64))
            for p in ids:
                oracle.pop(p, None)
        _check(index, oracle, ids)


def test_many_posts_grow_and_shrink() -> None:
    rng = np.random.default_rng(7)
    ids = np.unique(rng.integers(0, 10**12, 200_000))
    index = PostIndex()
    for part in np.array_split(ids, 50):  # many rebuilds while growing
        index.insert(part, (part % 1000).astype(np.int32))
    assert (index.lookup(ids) == ids % 1000).all()
    index.delete(ids[::2])
    assert (index.lookup(ids[::2]) == -1).all()
    assert (index.lookup(ids[1::2]) == ids[1::2] % 1000).all()
    again = ids[::2][:50_000]  # reinserted over tombstones
    index.insert(again, np.zeros(len(again), dtype=np.int32))
    assert (index.lookup(again) == 0).all()
    assert len(index) == len(ids) - len(ids[::2]) + len(again)
    assert -1 not in index and ids[1] in index
