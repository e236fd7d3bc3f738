"""DedupIndex against a set-based oracle: each id counted once while its minute is live."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.dedup import DedupIndex

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
            assert sorted(dropped) == sorted(expected)
            seen = {e: m for e, m in seen.items() if m >= cutoff}
        assert len(index) == len(seen)
        assert all((e in index) is (e in seen) for e in "abcdefgh")


def test_duplicate_in_a_later_minute_is_still_a_duplicate() -> None:
    """A redelivery stamped with another minute is recognised; its first minute governs expiry."""
    index = DedupIndex()
    assert index.add("e1", 5)
    assert not index.add("e1", 9)
    assert index.expire_before(6) == ["e1"]
    assert "e1" not in index
    assert index.add("e1", 9)


def test_expire_on_empty_and_nothing_old() -> None:
    """Expiry with nothing to drop returns []."""
    index = DedupIndex()
    assert index.expire_before(100) == []
    index.add("x", 100)
    assert index.expire_before(100) == []
    assert len(index) == 1
