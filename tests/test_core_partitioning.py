"""partitions_of against Kafka's default partitioner (aiokafka's murmur2), id by id."""

from __future__ import annotations

import numpy as np
from aiokafka.partitioner import murmur2
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamer.core.partitioning import partition_for_post, partitions_of

_IDS = st.one_of(st.integers(0, 2**63 - 1), st.integers(0, 10**6),
                 st.sampled_from([10**k for k in range(19)] + [10**k - 1 for k in range(1, 19)]))


def _kafka(post_id: int, partitions: int) -> int:
    return int(murmur2(str(post_id).encode()) & 0x7FFFFFFF) % partitions


@settings(max_examples=300, deadline=None)
@given(st.lists(_IDS, max_size=60), st.integers(1, 64))
@example([2**63 - 1, 0, 9, 10, 99, 100, 123456789012], 4)
@example([123456789012] * 3, 7)  # one length only
def test_matches_the_default_partitioner(post_ids: list[int], partitions: int) -> None:
    """Any mix of lengths (1-19 digits) in one column, in its order."""
    got = partitions_of(np.array(post_ids, dtype=np.int64), partitions).tolist()
    assert got == [_kafka(p, partitions) for p in post_ids]
    assert all(partition_for_post(p, partitions) == g for p, g in zip(post_ids, got, strict=True))
