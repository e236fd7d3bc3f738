"""Compatibility re-export: the partition state is pure and lives in streamer.core."""

from streamer.core.partition_state import (
    RETAIN_MINUTES,
    CompletePartial,
    Outcome,
    PartitionState,
)
from streamer.core.records import parse_record_key, record_key

__all__ = ["RETAIN_MINUTES", "CompletePartial", "Outcome", "PartitionState", "parse_record_key",
           "record_key"]
