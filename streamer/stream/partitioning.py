"""Compatibility re-export: the partitioner is pure and lives in streamer.core.partitioning."""

from streamer.core.partitioning import partition_for_post, partitions_of, post_key

__all__ = ["partition_for_post", "partitions_of", "post_key"]
