"""Redis key names and JSON encodings exactly as the contract spells them."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from streamer.core.payloads import (
    TrendingMeta,
    decode_trending,
    encode_meta,
    encode_suggestions,
    encode_trending,
    lock_key,
    suggestions_key,
    trending_key,
    trending_meta_key,
)
from streamer.core.scoring import PostCounts
from streamer.core.suggest import Suggestion
from streamer.core.window import Window


def test_key_names() -> None:
    """`nova:cache:trending:1h`, its `:meta`, `nova:cache:suggested_users:{id}`."""
    assert trending_key(1) == "nova:cache:trending:1h"
    assert trending_key(24) == "nova:cache:trending:24h"
    assert trending_meta_key(1) == "nova:cache:trending:1h:meta"
    assert suggestions_key(77) == "nova:cache:suggested_users:77"
    assert lock_key("suggestions").startswith("nova:cache:")
    assert lock_key("suggestions") != lock_key("trending")


def test_trending_encoding() -> None:
    """An array of objects in the given order; [] when empty."""
    posts = [PostCounts(123, 123, 10, 5, 4), PostCounts(7, views=1)]
    assert orjson.loads(encode_trending(posts)) == [
        {"post_id": 123, "score": 67.3, "views": 123, "likes": 10, "comments": 5, "shares": 4},
        {"post_id": 7, "score": 0.1, "views": 1, "likes": 0, "comments": 0, "shares": 0},
    ]
    assert encode_trending([]) == b"[]"


counters = st.integers(0, 10**9)


@settings(deadline=None)  # shared 2-core machine: no per-example deadline
@given(st.lists(st.builds(PostCounts, st.integers(0, 2**63 - 1), counters, counters, counters, counters)))
def test_trending_round_trip(posts: list[PostCounts]) -> None:
    """decode_trending(encode_trending(x)) == x, big ids included."""
    assert decode_trending(encode_trending(posts)) == posts
    assert decode_trending(encode_trending(posts).decode()) == posts


def test_meta_fields() -> None:
    """generated_at_ms, window bounds, mode, partitions (sorted), completeness, counting."""
    meta = TrendingMeta(1_000, Window(60_000, 120_000), "stream", [3, 1], missing_partitions=[2])
    assert orjson.loads(encode_meta(meta)) == {
        "generated_at_ms": 1_000,
        "window_start_ms": 60_000,
        "window_end_ms": 120_000,
        "mode": "stream",
        "partitions": [1, 3],
        "missing_partitions": [2],
        "complete": False,
        "count": "events",
        "min_people": 1,
    }
    plain = orjson.loads(encode_meta(TrendingMeta(5, Window(0, 60_000), "clickhouse", [], extra={"x": 1})))
    assert plain["partitions"] == [] and plain["complete"] is True and plain["x"] == 1


def test_suggestions_encoding() -> None:
    """An array of {user_id, score, mutual_count}; [] when empty."""
    items = [Suggestion(77, 1.3918, 3), Suggestion(5, 0.5, 1)]
    assert orjson.loads(encode_suggestions(items)) == [
        {"user_id": 77, "score": 1.3918, "mutual_count": 3},
        {"user_id": 5, "score": 0.5, "mutual_count": 1},
    ]
    assert encode_suggestions([]) == b"[]"


class TestKeysOfOneDeployment:
    """Internal keys carry STREAMER_APP_ID and share its Cluster slot; locks follow public keys."""

    def test_internal_keys_carry_the_app_id_as_hash_tag(self) -> None:
        """Partials, requests, snapshots, sink positions and run state: tagged {app id}."""
        from streamer.core.payloads import (
            complete_snapshot_key,
            hash_tag,
            merge_request_key,
            partial_key,
            reconcile_request_key,
            sink_positions_key,
        )

        keys = [partial_key("blue", 1, 3), merge_request_key("blue", 1),
                reconcile_request_key("blue", 1), complete_snapshot_key("blue", 1, 0),
                sink_positions_key("blue"), sink_positions_key("blue", "0f3a")]
        assert all(hash_tag(k) == "blue" for k in keys)
        assert len(set(keys)) == len(keys)
        assert partial_key("blue", 1, 3) != partial_key("green", 1, 3)
        assert not any(k.startswith("nova:cache:") for k in keys)

    def test_locks_are_keyed_by_the_public_key_they_guard(self) -> None:
        """Same slot as the trending value; no app id, so deployments exclude each other."""
        from streamer.core.payloads import fence_counter_key, hash_tag, trending_lock_key

        merge, standby = trending_lock_key(1, "merge"), trending_lock_key(1, "standby")
        assert hash_tag(merge) == hash_tag(standby) == trending_key(1)
        assert merge != standby
        assert hash_tag(fence_counter_key(merge)) == trending_key(1)

    def test_hash_tag_follows_redis_cluster(self) -> None:
        """The same slot as redis-py computes, for tagged, untagged and empty-tag keys."""
        from redis.crc import key_slot

        from streamer.core.payloads import hash_tag

        for key in ["nova:cache:trending:1h", "a{b}c", "a{}c{d}", "{x}y{z}", "no-tag"]:
            assert key_slot(hash_tag(key).encode()) == key_slot(key.encode())
