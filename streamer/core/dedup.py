"""Event-id dedup bounded by the window: ids are remembered only while their minute is live."""

from __future__ import annotations


class DedupIndex:
    """Remembers event ids by event-time minute; forgets minutes that left the window."""

    __slots__ = ("_by_minute", "_ids", "_minutes")

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._by_minute: dict[int, list[str]] = {}
        self._minutes: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def add(self, event_id: str, minute: int) -> bool:
        """Record an id; False when it was already seen (a duplicate)."""
        if event_id in self._ids:
            return False
        ids = self._by_minute.get(minute)
        if ids is None:
            ids = self._by_minute[minute] = []
            self._minutes[minute] = minute
        # One shared int object per minute: saves ~32 bytes per remembered id.
        self._ids[event_id] = self._minutes[minute]
        ids.append(event_id)
        return True

    def expire_before(self, minute: int) -> list[str]:
        """Forget ids of minutes older than `minute`; return them (for changelog deletes)."""
        dropped: list[str] = []
        for old in [m for m in self._by_minute if m < minute]:
            del self._minutes[old]
            for event_id in self._by_minute.pop(old):
                if self._ids.get(event_id) == old:
                    del self._ids[event_id]
                    dropped.append(event_id)
        return dropped
