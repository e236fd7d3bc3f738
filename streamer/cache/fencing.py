"""Fenced multi-key writes in a Redis Cluster, where keys of different slots cannot share a
MULTI/EXEC: each key stays whole, and a paused ex-holder of the lock cannot overwrite newer data.

One write under a lock:
1. In the lock's slot, one script checks that the lock still holds our token, takes the next
   fencing number from the counter beside the lock, and writes the keys of that slot (the
   trending value: its locks are tagged with its name, so they share its slot).
2. In every other slot, in the caller's order, one script writes that slot's keys only if no
   write with a newer fencing number has reached the slot, and records our number there.

So a writer that lost its lock writes nothing in the lock's slot, and nothing anywhere a newer
writer has already written. What readers may see is in docs/OPERATIONS.md.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from streamer.cache.lock import RedisLock
from streamer.core.payloads import fence_counter_key, slot_fence_key
from streamer.errors import LockLost

_CLAIM = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local n = redis.call('incr', KEYS[2])
for i = 3, #KEYS do redis.call('set', KEYS[i], ARGV[i], 'px', ARGV[2]) end
return n
"""
_FENCED = """
local last = tonumber(redis.call('get', KEYS[1]) or '0')
if tonumber(ARGV[1]) < last then return 0 end
redis.call('set', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('set', KEYS[i], ARGV[i + 1], 'px', ARGV[2]) end
return 1
"""


def slot_of(key: str) -> int:
    """Cluster slot of a key."""
    return int(key_slot(key.encode()))


@functools.cache
def _slot_tags() -> tuple[str, ...]:
    """For every slot, a short string that hashes to it (a hash tag that lands a key there)."""
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing, i = REDIS_CLUSTER_HASH_SLOTS, 0
    while missing:
        slot = int(key_slot(str(i).encode()))
        if tags[slot] is None:
            tags[slot] = str(i)
            missing -= 1
        i += 1
    return tuple(t for t in tags if t is not None)


def slot_tag(slot: int) -> str:
    """A hash tag whose keys land in `slot`."""
    return _slot_tags()[slot]


def by_slot(values: Mapping[str, bytes]) -> dict[int, dict[str, bytes]]:
    """The keys grouped by slot, groups and keys in the caller's order."""
    groups: dict[int, dict[str, bytes]] = {}
    for key, value in values.items():
        groups.setdefault(slot_of(key), {})[key] = value
    return groups


async def write_fenced(
    redis: Redis, values: Mapping[str, bytes], ttl_ms: int, lock: RedisLock | None
) -> None:
    """Cluster write of every key with PX ttl: one script per slot, fenced by the lock."""
    groups = by_slot(values)
    if lock is None:  # unfenced: each slot's keys in one MULTI/EXEC, slots in order
        for group in groups.values():
            async with redis.pipeline(transaction=True) as pipe:
                for key, value in group.items():
                    pipe.set(key, value, px=ttl_ms)
                await pipe.execute()
        return
    lock_slot = slot_of(lock.key)
    own = groups.pop(lock_slot, {})
    keys = [lock.key, fence_counter_key(lock.key), *own]
    number = int(await redis.eval(_CLAIM, len(keys), *keys, lock.token, ttl_ms, *own.values()))
    if not number:
        lock.held = False
        raise LockLost(f"lock {lock.key} lost before write; not overwriting")
    for slot, group in groups.items():
        fence = slot_fence_key(lock.key, slot_tag(slot))
        ok = await redis.eval(_FENCED, len(group) + 1, fence, *group, number, ttl_ms,
                              *group.values())
        if not ok:
            lock.held = False
            raise LockLost(f"a newer writer than lock {lock.key} already wrote {list(group)}")
