"""Scenario 5: suggestions job duration vs graph size, and link-prediction quality on held-out follows."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping

from benchmarks.common import Context, Plot, Row, ScenarioResult, Target
from streamer.clickhouse import queries
from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.core.suggest import Suggestion, suggest_for_user
from streamer.demo import generate

DATABASE = "bench_suggest"
NOW_MS = 1_795_913_760_000
BLOCK = 1000  # users per ClickHouse query, as JOB_SUGGESTION_BLOCK_USERS
PER_USER = 20
K = 10
DEGREE_CAPS = (20, 50)  # JOB_SUGGESTION_DEGREE_CAP values compared with the exact ranking
Graph = dict[int, set[int]]
Ranker = Callable[[int], list[int]]


def run(ctx: Context) -> ScenarioResult:
    """Duration of the ClickHouse path vs the pure-Python core; AA vs CN vs most-followed."""
    res = ScenarioResult("suggestions", "Suggested users: job duration and quality")
    asyncio.run(_durations(ctx, res))
    _quality(ctx, res)
    return res


def adjacency(edges: list[tuple[int, int]]) -> Graph:
    """follower -> followees."""
    graph: Graph = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
    return graph


async def _durations(ctx: Context, res: ScenarioResult) -> None:
    ch = ClickHouse(f"chdb://{ctx.work_dir / 'chdb'}", DATABASE, timeout_ms=900_000)
    await create_schema(ch)
    plot = Plot(
        "suggestions_duration",
        "Suggestions for every active user",
        "follow edges",
        "seconds",
        logx=True,
        logy=True,
    )
    for users in [300, 1_000] if ctx.smoke else [2_000, 10_000, 30_000]:
        ctx.step(f"suggestions: graph of {users:,} users")
        edges = generate.follow_graph(users, 10, seed=users)
        await _load_graph(ch, users, edges)
        ch_s, ranked = await _clickhouse_job(ch)
        graph = adjacency(edges)
        began = time.perf_counter()
        brute = {u: suggest_for_user(u, graph, PER_USER) for u in ranked}
        py_s = time.perf_counter() - began
        plot.series.setdefault("ClickHouse 2-hop query, blocks of 1000", []).append((len(edges), ch_s))
        plot.series.setdefault("pure-Python core baseline", []).append((len(edges), py_s))
        res.add(
            Row(
                f"suggestions job, {users:,} users / {len(edges):,} edges",
                ch_s,
                "s",
                "pure-Python suggest_for_user",
                py_s,
                note="active_users + one suggestions query per 1000 users, no Redis",
            )
        )
        same = _same(ranked, brute)
        res.add(
            Row(
                f"ClickHouse == core suggestions ({users:,} users)",
                float(same),
                "bool",
                target=Target("value>=", 1),
            )
        )
    res.plots.append(plot)


async def _load_graph(ch: ClickHouse, users: int, edges: list[tuple[int, int]]) -> None:
    await ch.command(f"TRUNCATE TABLE {DATABASE}.follows")
    await ch.command(f"TRUNCATE TABLE {DATABASE}.post_events")
    await queries.insert_follows(ch, [(a, b, NOW_MS - 86_400_000) for a, b in edges])
    await ch.command(
        f"INSERT INTO {DATABASE}.post_events (event_id, post_id, user_id, event_type, event_time) "
        f"SELECT concat('s', toString(number)), number % 1000, "
        f"number + 1, 'view', fromUnixTimestamp64Milli(toInt64({NOW_MS - 3_600_000}), 'UTC') "
        f"FROM numbers({users})"
    )


async def _clickhouse_job(ch: ClickHouse) -> tuple[float, dict[int, list[Suggestion]]]:
    began = time.perf_counter()
    users = await queries.active_users(ch, NOW_MS)
    ranked: dict[int, list[Suggestion]] = {}
    for start in range(0, len(users), BLOCK):
        ranked.update(await queries.suggestions(ch, users[start : start + BLOCK], PER_USER))
    return time.perf_counter() - began, ranked


def _same(a: Mapping[int, list[Suggestion]], b: Mapping[int, list[Suggestion]]) -> bool:
    """Same users, order and mutual counts; scores equal to 1e-9."""
    for user, items in a.items():
        other = b.get(user, [])
        if [(s.user_id, s.mutual_count) for s in items] != [(s.user_id, s.mutual_count) for s in other]:
            return False
        if any(abs(x.score - y.score) > 1e-9 for x, y in zip(items, other, strict=True)):
            return False
    return True


def held_out(graph: Graph, users: int, per_user: int, rng: random.Random) -> dict[int, set[int]]:
    """Recent follows of sampled users: 50% friend-of-friend, 30% popular, 20% uniform."""
    popular = [b for followees in graph.values() for b in followees]
    test: dict[int, set[int]] = {}
    for u in rng.sample(sorted(graph), min(len(graph), max(50, users // 5))):
        known = graph[u] | {u}
        new: set[int] = set()
        for _ in range(per_user * 10):
            if len(new) >= per_user:
                break
            roll = rng.random()
            if roll < 0.5:
                friend = rng.choice(sorted(graph[u]))
                pool = sorted(graph.get(friend, ()))
                cand = rng.choice(pool) if pool else rng.randint(1, users)
            else:
                cand = rng.choice(popular) if roll < 0.8 else rng.randint(1, users)
            if cand not in known:
                new.add(cand)
        if new:
            test[u] = new
    return test


def _rankers(graph: Graph) -> dict[str, Ranker]:
    in_degree = Counter(b for followees in graph.values() for b in followees)
    by_popularity = [u for u, _ in sorted(in_degree.items(), key=lambda kv: (-kv[1], kv[0]))]

    def adamic_adar(u: int) -> list[int]:
        return [s.user_id for s in suggest_for_user(u, graph, K)]

    def common_neighbours(u: int) -> list[int]:
        direct = graph.get(u, set())
        counts = Counter(c for f in direct for c in graph.get(f, ()) if c != u and c not in direct)
        return [c for c, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:K]]

    def most_followed(u: int) -> list[int]:
        direct = graph.get(u, set())
        out: list[int] = []
        for c in by_popularity:
            if c != u and c not in direct:
                out.append(c)
                if len(out) == K:
                    break
        return out

    def capped(cap: int) -> Ranker:
        return lambda u: [s.user_id for s in suggest_for_user(u, graph, K, cap)]

    return {
        "Adamic-Adar": adamic_adar,
        "common neighbours": common_neighbours,
        "most-followed": most_followed,
        **{f"Adamic-Adar, cap {cap}": capped(cap) for cap in DEGREE_CAPS},
    }


def score(ranker: Ranker, test: Mapping[int, set[int]]) -> tuple[float, float, float]:
    """Mean precision@K, recall@K and MRR (reciprocal rank of the first hit within K, else 0)."""
    p = r = mrr = 0.0
    for u, truth in test.items():
        top = ranker(u)[:K]
        hits = [i for i, c in enumerate(top) if c in truth]
        p += len(hits) / K
        r += len(hits) / len(truth)
        mrr += 1 / (hits[0] + 1) if hits else 0.0
    n = max(1, len(test))
    return p / n, r / n, mrr / n


def _cap_rows(res: ScenarioResult, graph: Graph, results: Mapping[str, tuple[float, ...]]) -> None:
    """Capped Adamic-Adar against the exact one and against plain common neighbours."""
    aa, cn = results["Adamic-Adar"], results["common neighbours"]
    for cap in DEGREE_CAPS:
        got = results[f"Adamic-Adar, cap {cap}"]
        above = sum(1 for f in graph.values() if len(f) > cap)
        paths = [len(graph.get(f, ())) for fs in graph.values() for f in fs]
        cut = sum(p for p in paths if p > cap) / max(1, sum(paths))
        note = (f"{above:,} of {len(graph):,} accounts follow more than {cap}; "
                f"{cut:.0%} of 2-hop paths skipped")
        for i, label in enumerate(("precision@10", "recall@10")):
            res.add(Row(f"Adamic-Adar cap {cap} {label}", got[i], "", "uncapped Adamic-Adar",
                        aa[i], note=note))
            res.add(Row(f"Adamic-Adar cap {cap} {label} vs common neighbours", got[i], "",
                        "common neighbours", cn[i]))


def _quality(ctx: Context, res: ScenarioResult) -> None:
    users = ctx.size(800, 8_000)
    ctx.step(f"quality: graph of {users:,} users, held-out recent follows")
    graph = adjacency(generate.follow_graph(users, 10, seed=99))
    test = held_out(graph, users, 5, random.Random(ctx.size(1, 2)))
    results = {name: score(fn, test) for name, fn in _rankers(graph).items()}
    aa, cn, mf = results["Adamic-Adar"], results["common neighbours"], results["most-followed"]
    labels = ("precision@10", "recall@10", "MRR")
    for i, label in enumerate(labels):
        target = Target("ratio>=", 1.0) if i == 0 else None
        res.add(Row(f"Adamic-Adar {label}", aa[i], "", "common neighbours", cn[i], target))
        res.add(Row(f"Adamic-Adar {label} vs most-followed", aa[i], "", "most-followed", mf[i]))
    _cap_rows(res, graph, results)
    plot = Plot(
        "suggestions_quality",
        f"Held-out recent follows ({len(test):,} users)",
        "",
        "",
        kind="bar",
        categories=list(labels),
    )
    plot.bars.update({name: list(vals) for name, vals in results.items()})
    res.plots.append(plot)
    res.notes.append(
        f"Quality graph: generate.follow_graph({users:,} users, avg degree 10); {len(test):,} sampled users "
        "each get up to 5 held-out new follows drawn 50% friend-of-friend (random walk u -> f -> c), "
        "30% by popularity, 20% uniformly; rankers see only the training graph. The mix is a modelling "
        "choice: more popularity-driven follows favour most-followed."
    )
