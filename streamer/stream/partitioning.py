"""Where a post's events belong: Kafka's default partitioner (murmur2 of the key) for str(post_id)."""

from __future__ import annotations

import functools

from aiokafka.partitioner import murmur2


def post_key(post_id: int) -> bytes:
    """The contract's message key: the post_id as a decimal UTF-8 string."""
    return str(post_id).encode()


@functools.lru_cache(maxsize=1 << 20)
def partition_for_post(post_id: int, partitions: int) -> int:
    """Partition the Java/aiokafka default partitioner picks for this post's key."""
    return int(murmur2(post_key(post_id)) & 0x7FFFFFFF) % partitions
