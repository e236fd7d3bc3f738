"""Every private Faust member streamer relies on, in one place, checked before Faust starts.

The lean transport (`stream/transport.py`) replaces Faust's consumer fetch loop and so needs
members of Faust's Consumer that are not public API; the table writer (`stream/app.py`) sets
Faust's current-event context variable so stores place directly written records in the right
partition. Every access to a Faust or mode name starting with `_` belongs in a function here,
and `MEMBERS` lists each one with the shape relied on.

`check_faust()` (run when `stream/transport.py` is imported, before the worker contacts
anything) and `check_consumer()` (run when Faust builds the consumer) raise `FaustIncompatible`,
one line naming the installed Faust version and the member, when the installed faust-streaming
is outside `SUPPORTED_FAUST` or a member moved: the start fails there instead of with an
AttributeError in the middle of a rebalance.

Upgrading Faust: docs/OPERATIONS.md "Upgrading Faust" (widen the pin here and in
pyproject.toml together, then tests/test_faust_compat.py names each member that moved).
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import import_module, metadata
from typing import Any, cast

from faust.types import TP, Message
from mode.utils.futures import notify
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from streamer.errors import StreamerError

FAUST_DISTRIBUTION = "faust-streaming"
SUPPORTED_FAUST = ">=0.15.3,<0.16"  # equal to the pin in pyproject.toml (tests/test_faust_compat.py)


class FaustIncompatible(StreamerError):
    """Raised at start when the installed Faust is untested or lacks a member relied on here."""


@dataclass(frozen=True)
class Member:
    """One Faust member used here: `kind` is "coroutine", "function" or "attribute"; `params`
    the parameter names after self (None: not checked)."""

    owner: str  # "module:Class" (or "module:" for a module-level name)
    name: str
    kind: str
    params: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        """How error messages name the member, e.g. `Consumer._wait_next_records`."""
        owner = self.owner.split(":")[1] or self.owner.split(":")[0]
        return f"{owner}.{self.name}"


_CONSUMER = "faust.transport.drivers.aiokafka:Consumer"
_THREAD = "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread"
MEMBERS: tuple[Member, ...] = (
    # Private members of the consumer read or called by the lean loop.
    Member(_CONSUMER, "_stopped", "attribute"),  # mode.Service: Event set once stopping
    Member(_CONSUMER, "_wait_next_records", "coroutine", ("timeout",)),
    Member(_CONSUMER, "_to_message", "function", ("tp", "record")),
    Member(_CONSUMER, "_add_gap", "coroutine", ("tp", "offset_from", "offset_to")),
    Member(_CONSUMER, "_read_offset", "attribute"),
    Member(_CONSUMER, "_buffered_partitions", "attribute"),
    Member(_CONSUMER, "_commit_every", "attribute"),
    Member(_CONSUMER, "_n_acked", "attribute"),
    Member(_CONSUMER, "_thread", "attribute"),
    # Faust's ack bookkeeping, done once per batch by `ack_offsets` (as `Consumer.ack` does).
    Member(_CONSUMER, "_acked", "attribute"),
    Member(_CONSUMER, "_acked_index", "attribute"),
    Member(_CONSUMER, "_committed_offset", "attribute"),
    Member(_CONSUMER, "_waiting_for_ack", "attribute"),
    Member(_CONSUMER, "ack", "function", ("message",)),
    Member("faust.types.tuples:", "ack_lock", "attribute"),
    Member(_THREAD, "seek_to_committed", "coroutine", ()),
    Member(_THREAD, "seek_to_beginning", "coroutine", ("partitions",)),
    Member(_THREAD, "_ensure_consumer", "function", ()),
    Member(_THREAD, "_fetch_records", "coroutine",
           ("consumer", "active_partitions", "timeout", "max_records")),
    Member(_THREAD, "call_thread", "coroutine", ("fun", "args", "kwargs")),
    Member("faust.transport.consumer:Fetcher", "_stopped", "attribute"),
    # Methods the lean consumer overrides: Faust must still call them with these parameters.
    Member(_CONSUMER, "_drain_messages", "coroutine", ("fetcher",)),
    Member(_CONSUMER, "_getmany", "coroutine", ("active_partitions", "timeout")),
    Member(_CONSUMER, "perform_seek", "coroutine", ()),
    Member(_CONSUMER, "seek_to_committed", "coroutine", ()),
    Member(_CONSUMER, "on_partitions_revoked", "coroutine", ("revoked",)),
    Member(_CONSUMER, "on_partitions_assigned", "coroutine", ("assigned", "generation_id")),
    Member(_CONSUMER, "_new_consumer_thread", "function", ()),
    Member(_THREAD, "_create_worker_consumer", "function", ("transport",)),
    Member("faust.tables.table:Table", "on_recovery_completed", "coroutine",
           ("active_tps", "standby_tps")),
    # The current-event context variable the table writer sets (stores read it).
    Member("faust.streams:", "_current_event", "attribute"),
)


def installed_faust_version() -> str:
    """Version of the installed faust-streaming distribution."""
    return metadata.version(FAUST_DISTRIBUTION)


def member_problem(member: Member) -> str | None:
    """What is wrong with one member in the installed Faust, or None when it is as relied on."""
    module_name, _, class_name = member.owner.partition(":")
    owner: Any = import_module(module_name)
    if class_name:
        owner = getattr(owner, class_name, None)
        if owner is None:
            return f"{class_name} is missing from {module_name}"
    if member.kind == "attribute":
        declared = any(member.name in vars(cls).get("__annotations__", {})
                       for cls in getattr(owner, "__mro__", ()))
        return None if declared or hasattr(owner, member.name) else f"{member.label} is missing"
    fn = getattr(owner, member.name, None)
    if fn is None:
        return f"{member.label} is missing"
    if inspect.iscoroutinefunction(fn) != (member.kind == "coroutine"):
        return f"{member.label} is no longer a {member.kind}"
    if member.params is not None:
        params = tuple(inspect.signature(fn).parameters)[1:]
        if params != member.params:
            return f"{member.label} takes {params}, expected {member.params}"
    return None


def _fail(problems: list[str]) -> None:
    if problems:
        raise FaustIncompatible(
            f"{FAUST_DISTRIBUTION} {installed_faust_version()} is not supported: "
            f"{'; '.join(problems)} (tested: {SUPPORTED_FAUST}; see streamer/stream/faust_compat.py)")


def check_faust() -> None:
    """Refuse an untested Faust version or one whose members moved (one line, no traceback)."""
    version = installed_faust_version()
    if Version(version) not in SpecifierSet(SUPPORTED_FAUST):
        _fail(["outside the tested range"])
    _fail([problem for member in MEMBERS if (problem := member_problem(member)) is not None])


def check_consumer(consumer: Any) -> None:
    """The instance attributes of a freshly built consumer have the types relied on here."""
    expected: dict[str, Callable[[Any], bool]] = {
        "_stopped": lambda v: callable(getattr(v, "is_set", None)),
        "_read_offset": lambda v: isinstance(v, MutableMapping),
        "_buffered_partitions": lambda v: isinstance(v, AbstractSet),
        "_commit_every": lambda v: v is None or isinstance(v, int),
        "_n_acked": lambda v: isinstance(v, int),
        "_acked": lambda v: isinstance(v, MutableMapping),
        "_acked_index": lambda v: isinstance(v, MutableMapping),
        "_committed_offset": lambda v: isinstance(v, MutableMapping),
        "_thread": lambda v: all(callable(getattr(v, name, None))
                                 for name in ("seek_to_committed", "seek_to_beginning")),
    }
    missing = object()
    _fail([f"Consumer.{name} is missing or changed type" for name, ok in expected.items()
           if (value := getattr(consumer, name, missing)) is missing or not ok(value)])


# Consumer internals (faust/transport/consumer.py), typed.

def stop_requested(service: Any) -> Callable[[], bool]:
    """`is_set` of a mode Service's stopped event: true once its stop began."""
    return cast(Callable[[], bool], service._stopped.is_set)


async def wait_next_records(
    consumer: Any, timeout_s: float
) -> tuple[Mapping[TP, list[Any]] | None, set[TP] | None]:
    """One fetch: raw records per partition, and the partitions active for it (None: all)."""
    records, active = await consumer._wait_next_records(timeout_s)
    return records, active


async def fetch_records(
    consumer: Any, active_partitions: AbstractSet[TP] | None, timeout_s: float, max_records: int
) -> Mapping[TP, list[Any]]:
    """Faust's `AIOKafkaConsumerThread.getmany` with the round's record bound chosen by the
    caller instead of `broker_max_poll_records`: the same call into the consumer thread."""
    thread = consumer._thread
    records: Mapping[TP, list[Any]] = await thread.call_thread(
        thread._fetch_records, thread._ensure_consumer(), active_partitions,
        timeout=timeout_s, max_records=max_records)
    return records


def set_fetch_max_wait(consumer: Any, wait_ms: int) -> None:
    """Set an aiokafka consumer's `fetch_max_wait_ms` (Faust passes a fixed 1500): before it
    starts, the consumer hands it to the Fetcher it builds in `start()`; once started, the
    Fetcher reads its own copy for every fetch request it builds."""
    if not isinstance(getattr(consumer, "_fetch_max_wait_ms", None), int):
        _fail([f"aiokafka {metadata.version('aiokafka')} AIOKafkaConsumer._fetch_max_wait_ms "
               "is missing or changed type"])
    consumer._fetch_max_wait_ms = wait_ms
    fetcher = getattr(consumer, "_fetcher", None)
    if fetcher is not None:
        if not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
            _fail([f"aiokafka {metadata.version('aiokafka')} Fetcher._fetch_max_wait_ms "
                   "is missing or changed type"])
        fetcher._fetch_max_wait_ms = wait_ms


def to_message(consumer: Any, tp: TP, record: Any) -> Message:
    """A raw aiokafka record as the Faust Message its callbacks expect."""
    return cast(Message, consumer._to_message(tp, record))


def buffered_partitions(consumer: Any) -> set[TP]:
    """Partitions Faust delivers from even while they are not active (buffered in a stream)."""
    return cast(set[TP], consumer._buffered_partitions)


def read_offsets(consumer: Any) -> MutableMapping[TP, int | None]:
    """Last offset read per partition (missing: None); Faust resets it on seeks."""
    return cast(MutableMapping[TP, "int | None"], consumer._read_offset)


async def add_gap(consumer: Any, tp: TP, first: int, last: int) -> None:
    """Record offsets first..last as a gap, which Faust's commit treats as acked."""
    await consumer._add_gap(tp, first, last)


def ack_offsets(consumer: Any, tp: TP, offsets: Sequence[int]) -> None:
    """Faust's `Consumer.ack` for a batch of offsets of one partition at once: the same
    bookkeeping (under the same lock) without a Message object per offset. Its commit then
    moves past each contiguous run of acked offsets, exactly as with per-message acks."""
    with _ack_lock():
        if not consumer.app.topics.acks_enabled_for(tp.topic):
            return
        try:
            committed = consumer._committed_offset[tp]
            index: set[int] = consumer._acked_index[tp]
            acked: list[int] = consumer._acked[tp]
            before = len(index)
            for offset in offsets:
                if (committed is None or offset >= committed) and offset not in index:
                    index.add(offset)
                    acked.append(offset)
            consumer._n_acked += len(index) - before
        finally:
            notify(consumer._waiting_for_ack)


def _ack_lock() -> Any:
    return import_module("faust.types.tuples").ack_lock


def take_commit_due(consumer: Any) -> bool:
    """True (and the ack counter reset) when `broker_commit_every` acks came in since the last."""
    commit_every: int | None = consumer._commit_every
    if commit_every is not None and consumer._n_acked >= commit_every:
        consumer._n_acked = 0
        return True
    return False


def consumer_thread(consumer: Any) -> Any:
    """The aiokafka consumer thread behind Faust's consumer (its seeks skip Faust's bookkeeping)."""
    return consumer._thread


# Table writes outside a stream (faust/streams.py, faust/tables/base.py, faust/stores/).

@dataclass
class _FakeMessage:
    topic: str
    partition: int


@dataclass
class _FakeEvent:
    """What Faust stores look at (`current_event().message.partition`) when written directly."""

    message: _FakeMessage


def _current_event_var() -> ContextVar[Any]:
    return cast(ContextVar[Any], import_module("faust.streams")._current_event)


@contextmanager
def source_partition(topic: str, partition: int) -> Iterator[None]:
    """Inside, Faust tables and stores see a current event from `topic`[`partition`]."""
    var = _current_event_var()
    event = _FakeEvent(_FakeMessage(topic, partition))  # held here: the variable keeps a weakref
    token = var.set(weakref.ref(event))
    try:
        yield
    finally:
        var.reset(token)
        del event
