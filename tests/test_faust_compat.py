"""The Faust members streamer relies on exist with the shape it uses, in the installed Faust.

One test per member (named after it), so a Faust upgrade that moved one fails here by name
before the lean transport misbehaves at run time. See streamer/stream/faust_compat.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.types import TP
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from streamer.errors import StreamerError
from streamer.stream import faust_compat as compat
from streamer.stream.transport import LeanConsumer, broker_url, register_transport

ROOT = Path(__file__).resolve().parents[1]


def lean_app(name: str, **conf: Any) -> faust.App:
    """A Faust app on the lean transport; nothing connects until it starts."""
    register_transport()
    return faust.App(name, broker=broker_url("127.0.0.1:9"), **conf)


class TestVersion:
    """The tested range is the pin, and the installed Faust is inside it."""

    def test_supported_range_is_the_pyproject_pin(self) -> None:
        """SUPPORTED_FAUST and pyproject.toml cannot drift apart."""
        deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
        pins = [Requirement(dep) for dep in deps if Requirement(dep).name == compat.FAUST_DISTRIBUTION]
        assert [pin.specifier for pin in pins] == [SpecifierSet(compat.SUPPORTED_FAUST)]

    def test_installed_faust_is_in_the_range(self) -> None:
        """The suite runs against a supported Faust; check_faust accepts it."""
        assert Version(compat.installed_faust_version()) in SpecifierSet(compat.SUPPORTED_FAUST)
        compat.check_faust()

    def test_an_untested_version_fails_in_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The error names the installed version and the range (the range is narrowed here:
        a second Faust cannot be installed next to the tested one)."""
        monkeypatch.setattr(compat, "SUPPORTED_FAUST", ">=99")
        with pytest.raises(compat.FaustIncompatible) as info:
            compat.check_faust()
        message = str(info.value)
        assert f"faust-streaming {compat.installed_faust_version()} is not supported" in message
        assert "outside the tested range" in message and ">=99" in message and "\n" not in message
        assert issubclass(compat.FaustIncompatible, StreamerError)  # the CLI prints it in one line


@pytest.mark.parametrize("member", compat.MEMBERS, ids=lambda m: m.label)
def test_member_is_as_relied_on(member: compat.Member) -> None:
    """Exists, is a coroutine / function / attribute as listed, takes the listed parameters."""
    assert compat.member_problem(member) is None


class TestMemberCheck:
    """The member check itself reports what changed (members that do not exist stand in for a
    Faust that changed them)."""

    @pytest.mark.parametrize(("member", "problem"), [
        (compat.Member("faust.transport.drivers.aiokafka:Consumer", "_gone", "coroutine"),
         "Consumer._gone is missing"),
        (compat.Member("faust.transport.drivers.aiokafka:Consumer", "_gone_attr", "attribute"),
         "Consumer._gone_attr is missing"),
        (compat.Member("faust.transport.drivers.aiokafka:Consumer", "_to_message", "coroutine"),
         "Consumer._to_message is no longer a coroutine"),
        (compat.Member("faust.transport.drivers.aiokafka:Consumer", "_add_gap", "coroutine",
                       ("tp", "start")),
         "Consumer._add_gap takes ('tp', 'offset_from', 'offset_to'), expected ('tp', 'start')"),
        (compat.Member("faust.transport.consumer:NoSuchClass", "x", "attribute"),
         "NoSuchClass is missing from faust.transport.consumer"),
    ], ids=["missing-method", "missing-attribute", "kind", "parameters", "class"])
    def test_a_changed_member_is_named(self, member: compat.Member, problem: str) -> None:
        assert compat.member_problem(member) == problem

    def test_check_faust_fails_in_one_line_naming_the_member(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        gone = compat.Member("faust.transport.drivers.aiokafka:Consumer", "_gone", "coroutine")
        monkeypatch.setattr(compat, "MEMBERS", (*compat.MEMBERS, gone))
        with pytest.raises(compat.FaustIncompatible, match=r"Consumer\._gone is missing") as info:
            compat.check_faust()
        assert compat.installed_faust_version() in str(info.value) and "\n" not in str(info.value)


class TestConsumerInstance:
    """A real LeanConsumer built by Faust carries the instance state the adapter reads."""

    def test_adapter_reads_a_built_consumer(self) -> None:
        consumer = lean_app("compat-consumer").consumer
        assert isinstance(consumer, LeanConsumer)
        compat.check_consumer(consumer)  # also run by LeanConsumer.__init__
        tp = TP("ev", 0)
        assert compat.read_offsets(consumer)[tp] is None  # unread partitions read as None
        assert compat.buffered_partitions(consumer) == set()
        assert compat.stop_requested(consumer)() is False
        thread = compat.consumer_thread(consumer)
        assert callable(thread.seek_to_committed) and callable(thread.seek_to_beginning)

    def test_commit_is_due_after_commit_every_acks(self) -> None:
        """broker_commit_every acks make a commit due once, and the counter starts over."""
        consumer: Any = lean_app("compat-commit", broker_commit_every=3).consumer
        consumer._n_acked = 2
        assert compat.take_commit_due(consumer) is False and consumer._n_acked == 2
        consumer._n_acked = 3
        assert compat.take_commit_due(consumer) is True and consumer._n_acked == 0

    def test_a_missing_instance_attribute_is_named(self) -> None:
        """A stand-in object: a consumer built by the installed Faust always has them all."""
        consumer = lean_app("compat-missing").consumer
        stand_in = SimpleNamespace(**{name: getattr(consumer, name) for name in (
            "_stopped", "_read_offset", "_buffered_partitions", "_commit_every", "_thread")})
        with pytest.raises(compat.FaustIncompatible, match=r"Consumer\._n_acked is missing"):
            compat.check_consumer(stand_in)

    async def test_faust_fetcher_runs_the_consumers_drain_messages(self) -> None:
        """The override point: Faust's Fetcher hands itself to `consumer._drain_messages`. The
        consumer is a recorder (a real one would need a running broker to get this far)."""
        app: Any = lean_app("compat-fetcher")
        got: list[Any] = []

        class Recorder:
            async def _drain_messages(self, fetcher: Any) -> None:
                got.append(fetcher)

        app.consumer = Recorder()
        fetcher = app.transport.Fetcher(app)
        await type(fetcher)._fetcher(fetcher)
        assert got == [fetcher]


class TestSourcePartition:
    """Direct table writes land in the partition named, as the table writer needs."""

    def test_rocksdb_write_lands_in_the_named_partition(self, tmp_path: Path) -> None:
        app = faust.App("compat-store", broker="memory://", store="rocksdb://", datadir=str(tmp_path))
        table: Any = app.Table("state", partitions=4, key_type=bytes, value_type=bytes)
        with pytest.raises(AssertionError):  # Faust's store: no current event, no partition
            table.data[b"k"] = b"v"
        with compat.source_partition("ev", 3):
            event: Any = faust.streams.current_event()
            assert (event.message.topic, event.message.partition) == ("ev", 3)
            table.data[b"k"] = b"v"
            assert table.data[b"k"] == b"v"
        assert faust.streams.current_event() is None
        assert os.path.exists(table.data.partition_path(3))
        with compat.source_partition("ev", 2):
            assert b"k" not in table.data  # stored in partition 3's database only


def test_an_untested_faust_stops_the_worker_in_one_line(tmp_path: Path) -> None:
    """`streamer worker` exits 1 with one line before it contacts anything. The range is
    narrowed in the child (a second Faust cannot be installed next to the tested one)."""
    code = ("import sys; from streamer.stream import faust_compat as c; c.SUPPORTED_FAUST = '>=99'; "
            "from streamer.cli import main; sys.exit(main(['worker']))")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "STREAMER_DATA_DIR": str(tmp_path / "data")}
    result = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"streamer: faust-streaming {compat.installed_faust_version()} is not supported: "
        "outside the tested range (tested: >=99; see streamer/stream/faust_compat.py)"]


# Reads left outside the adapter (none: every access goes through faust_compat).
KNOWN_OUTSIDE: set[tuple[str, str]] = set()


def test_private_members_are_reached_only_through_the_adapter() -> None:
    """No module but faust_compat names a private Faust member the adapter covers (so
    MEMBERS stays the complete list of what an upgrade must keep)."""
    # defined by the lean consumer and its thread, not reached
    overridden = {"_drain_messages", "_getmany", "_new_consumer_thread", "_create_worker_consumer"}
    names = {m.name for m in compat.MEMBERS if m.name.startswith("_")} - overridden
    pattern = re.compile(r"\b(" + "|".join(sorted(names)) + r")\b")
    found = {(str(path.relative_to(ROOT)), match) for path in (ROOT / "streamer").rglob("*.py")
             if path.name != "faust_compat.py"
             for match in pattern.findall(path.read_text())}
    assert found == KNOWN_OUTSIDE
