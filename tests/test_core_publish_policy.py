"""Pure publishing-source policies: the merger's fallback and the standby's takeover."""

from __future__ import annotations

from streamer.core.publish_policy import PublishSource, merger_source, standby_decision


def decide(complete: bool, *, drift: bool = False, last_complete_ms: int = 90_000,
           key_ttl_left_ms: int | None = 60_000) -> PublishSource:
    """merger_source at now=100 s, next try at 105 s, fallback after 180 s."""
    return merger_source(
        now_ms=100_000, merge_complete=complete, use_clickhouse=drift,
        last_complete_ms=last_complete_ms, key_ttl_left_ms=key_ttl_left_ms,
        next_try_ms=105_000, fallback_after_ms=180_000,
    )


class TestMergerSource:
    """The merger's fallback: complete merge, ClickHouse on drift/timeout/expiry, else skip."""

    def test_complete_merge_publishes_stream(self) -> None:
        """A complete merge is published as the stream result."""
        assert decide(True) is PublishSource.STREAM

    def test_drift_forces_clickhouse(self) -> None:
        """Drift wins over a complete merge."""
        assert decide(True, drift=True) is PublishSource.CLICKHOUSE

    def test_incomplete_merge_waits_while_key_outlives_next_try(self) -> None:
        """Incomplete and recent: skip (the key still lives past the next attempt)."""
        assert decide(False) is PublishSource.SKIP

    def test_incomplete_for_too_long_falls_back(self) -> None:
        """No complete merge for fallback_after: ClickHouse."""
        assert decide(False, last_complete_ms=100_000 - 180_000) is PublishSource.CLICKHOUSE

    def test_key_about_to_expire_falls_back_early(self) -> None:
        """Skipping would let the key expire before the next try: ClickHouse now."""
        for ttl in (None, 0, 9_000):
            assert decide(False, key_ttl_left_ms=ttl) is PublishSource.CLICKHOUSE


class TestStandbyDecision:
    """The standby publishes on a missing or stale meta, or on its own cadence."""

    def test_cases(self) -> None:
        """Missing, stale, fresh, own-not-due and own-due metas."""
        iv, check = 60_000, 5_000
        assert standby_decision(None, 0, "me", iv, check).publish
        stale = {"mode": "stream", "generated_at_ms": 0}
        assert standby_decision(stale, 72_000, "me", iv, check).publish
        assert not standby_decision(stale, 71_999, "me", iv, check).publish
        mine = {"mode": "clickhouse", "generated_at_ms": 0, "publisher": "me"}
        assert not standby_decision(mine, 50_000, "me", iv, check).publish
        assert standby_decision(mine, 57_500, "me", iv, check).publish
        other = {**mine, "publisher": "other"}
        assert not standby_decision(other, 60_000, "me", iv, check).publish
