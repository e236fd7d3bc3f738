"""The job interface: compute a value and write it to keys with a TTL, on an interval."""

from __future__ import annotations

from abc import ABC, abstractmethod

from streamer.cache.lock import RedisLock


class Job(ABC):
    """A periodic job; `exclusive` jobs run on one replica at a time under a Redis lock."""

    name: str = "job"
    interval_s: float = 60.0
    exclusive: bool = True
    lock_key: str | None = None  # the lock's key when it guards a public key (core.payloads)
    # False: one run of the job spans several calls (suggestions: polls, shards, replicas), so
    # the job counts its own runs in JOB_RUNS/JOB_DURATION; the runner counts only failures.
    counts_calls_as_runs: bool = True

    def refresh(self) -> None:  # noqa: B027 - an optional hook, deliberately not abstract
        """Pick up reloaded settings between runs (interval included); default: nothing."""

    async def should_run(self) -> tuple[bool, str]:
        """Whether this tick has work to do (e.g. a standby that sees a fresh stream)."""
        return True, ""

    @abstractmethod
    async def run(self, lock: RedisLock | None) -> str:
        """Do one run; writes must be fenced by `lock`; returns a one-line summary."""
