"""Post -> slot index cost: `python -m benchmarks index [--events N] [--batches B ...]`.

The window's numpy table (`core/post_index.py`) against a dict from post id to slot (the
former index, same lookups: `holds` on every event, then slots, new posts inserted), on
wide traffic (70 % of the events on posts with two events, 30 % on 1,000 hot posts), in one
process, CPU time per event for each batch size.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from streamer.core.post_index import PostIndex

I64 = npt.NDArray[np.int64]


def wide_posts(events: int, seed: int = 1) -> I64:
    """Post id of every event: 30 % on 1,000 hot posts, 70 % on posts with two events."""
    rng = np.random.default_rng(seed)
    hot = rng.integers(0, 10**12, 1000)
    tail = rng.integers(0, 10**12, int(events * 0.35) + 1)
    ids = np.concatenate([rng.choice(hot, int(events * 0.3)), np.repeat(tail, 2)])[:events]
    rng.shuffle(ids)
    return ids.astype(np.int64)


def table_pass(ids: I64, batch: int) -> list[npt.NDArray[np.int32]]:
    """Every batch: which posts are held, then the slot of each (new posts inserted)."""
    index, next_slot, out = PostIndex(), 0, []
    for i in range(0, len(ids), batch):
        part = ids[i:i + batch]
        found = index.lookup(part)
        missing = found < 0
        if missing.any():
            new, inverse = np.unique(part[missing], return_inverse=True)
            slots = np.arange(next_slot, next_slot + len(new), dtype=np.int32)
            index.insert(new, slots)
            next_slot += len(new)
            found[missing] = slots[inverse]
        out.append(found)
    return out


def dict_pass(ids: I64, batch: int) -> list[npt.NDArray[np.int32]]:
    """The same with a dict (the window's former index)."""
    slot_of: dict[int, int] = {}
    out = []
    for i in range(0, len(ids), batch):
        part = ids[i:i + batch]
        np.fromiter(map(slot_of.__contains__, part.tolist()), dtype=np.bool_, count=len(part))
        unique, inverse = np.unique(part, return_inverse=True)
        posts = unique.tolist()
        found = list(map(slot_of.get, posts))
        if None in found:
            new = [p for p, s in zip(posts, found, strict=True) if s is None]
            slot_of.update(zip(new, range(len(slot_of), len(slot_of) + len(new)), strict=True))
            found = list(map(slot_of.__getitem__, posts))
        out.append(np.array(found, dtype=np.int32)[inverse])
    return out


Pass = Callable[[I64, int], list[npt.NDArray[np.int32]]]


def timed(run: Pass, ids: I64, batch: int) -> tuple[float, npt.NDArray[np.int32]]:
    """CPU ns per event of one pass, and the slots it gave."""
    start = time.process_time()
    slots = run(ids, batch)
    return (time.process_time() - start) / len(ids) * 1e9, np.concatenate(slots)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks index", description=__doc__)
    parser.add_argument("--events", type=int, default=500_000, help="events (one partition)")
    parser.add_argument("--batches", type=int, nargs="+", default=[10, 100, 1000, 10000],
                        help="events per batch")
    args = parser.parse_args(argv)
    ids = wide_posts(args.events)
    print(f"{args.events:,} events, {len(np.unique(ids)):,} posts; CPU ns per event")
    print("batch  table    dict   table/dict")
    for batch in args.batches:
        table, table_slots = timed(table_pass, ids, batch)
        plain, dict_slots = timed(dict_pass, ids, batch)
        if not np.array_equal(table_slots, dict_slots):  # both number new posts in id order
            raise SystemExit(f"batch {batch}: the table and the dict gave different slots")
        print(f"{batch:>5}  {table:>6.0f}  {plain:>6.0f}   {table / plain:.2f}")
    return 0
