"""The sample generator: the same seeded graph as a stream, with unfollows, re-follows, blocks
and unblocks whose counts match the rows."""

from __future__ import annotations

from collections import Counter

from streamer.demo.generate import GraphTally, follow_edges, follow_graph, graph_rows
from tests.test_jobs_suggestions_ends import current

NOW_MS = 1_800_000_000_000


def test_rows_end_and_restart_some_follows_of_the_seeded_graph() -> None:
    """Every follow of the graph starts once; the current follows are the graph minus the
    unfollows not followed again; the tally counts what the rows say."""
    users = 4000
    rows = list(graph_rows(users, 20, NOW_MS))
    graph = follow_graph(users, 20)
    assert list(follow_edges(users, 20)) == graph  # sorted by (follower, followee), no repeats
    starts = Counter((a, b) for t, a, b, ts, d in rows if t == "follows" and ts == NOW_MS - 3 * 3_600_000)
    assert set(starts) == set(graph) and set(starts.values()) == {1}
    ended = {(a, b) for t, a, b, _, d in rows if t == "follows" and d == 1}
    again = {(a, b) for t, a, b, ts, d in rows if t == "follows" and d == 0 and ts == NOW_MS - 3_600_000}
    assert ended and again and again <= ended
    follows = current([(t, a, b, ts, d) for t, a, b, ts, d in rows], "follows")
    assert follows == (set(graph) - ended) | again
    blocks = [r for r in rows if r[0] == "blocks"]
    assert any(r[4] == 0 for r in blocks) and all(r[1] != r[2] for r in blocks)
    tally = GraphTally(users, NOW_MS)
    for row in rows:
        tally.add(row)
    stats = tally.stats()
    assert stats["edges"] == len(follows)
    assert (stats["unfollows"], stats["refollows"]) == (len(ended), len(again))
    assert stats["blocks"] + stats["unblocks"] == len(blocks)
