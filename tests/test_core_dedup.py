"""DedupIndex against a set-based oracle: each id counted once while its minute is live."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamer.core.dedup import DedupIndex, _Run, event_keys

ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from("abcdefgh"), st.integers(0, 10)),
        st.tuples(st.just("expire"), st.integers(0, 12)),
    ),
    max_size=80,
)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(ops)
def test_dedup_matches_oracle(program: list[tuple[Any, ...]]) -> None:
    """add is True exactly for unseen ids; expire_before forgets ids of older minutes only."""
    index = DedupIndex()
    seen: dict[str, int] = {}
    for op in program:
        if op[0] == "add":
            _, event_id, minute = op
            assert index.add(event_id, minute) is (event_id not in seen)
            seen.setdefault(event_id, minute)
        else:
            cutoff = op[1]
            dropped = index.expire_before(cutoff)
            expected = {e for e, m in seen.items() if m < cutoff}
            assert dropped == len(expected)
            seen = {e: m for e, m in seen.items() if m >= cutoff}
        assert len(index) == len(seen)
        assert all((e in index) is (e in seen) for e in "abcdefgh")


def test_duplicate_in_a_later_minute_is_still_a_duplicate() -> None:
    """A redelivery stamped with another minute is recognised; its first minute governs expiry."""
    index = DedupIndex()
    assert index.add("e1", 5)
    assert not index.add("e1", 9)
    assert index.expire_before(6) == 1
    assert "e1" not in index
    assert index.add("e1", 9)


def test_expire_on_empty_and_nothing_old() -> None:
    """Expiry with nothing to drop drops nothing."""
    index = DedupIndex()
    assert index.expire_before(100) == 0
    index.add("x", 100)
    assert index.expire_before(100) == 0
    assert len(index) == 1


class TestEventKeys:
    """Ids become 16-byte keys: exact for canonical UUIDs, a 128-bit digest otherwise."""

    def test_canonical_uuid_is_stored_as_its_own_bytes(self) -> None:
        """The key of a lower-case hyphenated UUID is exactly its 16 bytes."""
        u = uuid.UUID("8f0c2a1e-5b7d-4c3e-9a10-0123456789ab")
        high, low = event_keys([str(u)])
        assert np.array([high[0], low[0]], dtype=np.uint64).tobytes() == u.bytes

    def test_spellings_of_one_uuid_are_different_ids(self) -> None:
        """Upper case, no hyphens, braces: other strings, so other keys (the contract compares
        event_id strings)."""
        u = "8f0c2a1e-5b7d-4c3e-9a10-0123456789ab"
        variants = [u, u.upper(), u.replace("-", ""), "{" + u + "}", u[:-1] + "g", u[:35] + "é"]
        high, low = event_keys(variants)
        assert len(set(zip(high.tolist(), low.tolist(), strict=True))) == len(variants)

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(st.text(min_size=1, max_size=40),
                              st.uuids().map(str), st.uuids().map(lambda u: str(u).upper())),
                    max_size=30))
    def test_distinct_ids_get_distinct_keys(self, ids: list[str]) -> None:
        """Equal ids share a key and different ids never do (also across batches)."""
        high, low = event_keys(ids)
        keys = list(zip(high.tolist(), low.tolist(), strict=True))
        assert len(set(keys)) == len(set(ids))
        for i, event_id in enumerate(ids):
            h1, l1 = event_keys([event_id])
            assert (int(h1[0]), int(l1[0])) == keys[i]

    @settings(max_examples=200, deadline=None)
    @given(st.lists(st.one_of(st.text(st.characters(exclude_categories=()), min_size=1, max_size=40),
                              st.text("0123456789abcdef", min_size=32, max_size=32),
                              st.uuids().map(str), st.uuids().map(lambda u: str(u).upper())),
                    max_size=40))
    @example(["a\ud800b", "0123456789abcdef0123456789abcdef", "é"])
    def test_keys_are_the_persisted_definition(self, ids: list[str]) -> None:
        """Keys stay what changelog records of earlier versions hold: a canonical UUID's own
        16 bytes, else blake2b (16 bytes) of the UTF-8 id with surrogates passed."""
        high, low = event_keys(ids)
        for i, event_id in enumerate(ids):
            try:
                canonical = str(uuid.UUID(event_id)) == event_id
            except ValueError:
                canonical = False
            want = uuid.UUID(event_id).bytes if canonical else hashlib.blake2b(
                event_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            assert np.array([high[i], low[i]], dtype=np.uint64).tobytes() == want

    def test_first_occurrences_keeps_the_earliest(self) -> None:
        """Within a batch the first copy of a key wins."""
        high = np.array([5, 3, 5, 5, 3], dtype=np.uint64)
        low = np.array([1, 1, 1, 2, 1], dtype=np.uint64)
        fresh = DedupIndex().add_batch(high, low, np.zeros(5, dtype=np.int64))
        assert fresh.tolist() == [True, True, False, True, False]

    def test_equal_high_halves_are_told_apart(self) -> None:
        """Keys that share their high 64 bits (a 2^-64 event) are still separate ids."""
        run = _Run(np.array([7, 7, 7, 9], dtype=np.uint64), np.array([1, 2, 3, 1], dtype=np.uint64),
                   np.zeros(4, dtype=np.int64))
        found = run.contains(np.array([7, 7, 7, 9, 9], dtype=np.uint64),
                             np.array([3, 2, 4, 1, 2], dtype=np.uint64))
        assert found.tolist() == [True, True, False, True, False]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 5)), max_size=40),
                max_size=20))
def test_batches_merge_runs_without_losing_ids(batches: list[list[tuple[int, int]]]) -> None:
    """Many batches (runs that merge): add_batch is True exactly for first sightings."""
    index = DedupIndex()
    seen: set[int] = set()
    for batch in batches:
        ids = [f"e{i}" for i, _ in batch]
        high, low = event_keys(ids)
        fresh = index.add_batch(high, low, np.array([m for _, m in batch], dtype=np.int64))
        want = []
        for i, _ in batch:
            want.append(i not in seen)
            seen.add(i)
        assert fresh.tolist() == want
    assert len(index) == len(seen)
