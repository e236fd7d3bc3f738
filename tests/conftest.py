"""Shared fixtures: a private redis-server, a tansu broker and an embedded ClickHouse directory."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as sync_redis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from redis.asyncio import Redis

from streamer.clickhouse.client import ClickHouse
from streamer.clickhouse.schema import create_schema
from streamer.demo.services import LocalService, start_redis, start_tansu
from streamer.ops.shutdown import set_hard_exit
from streamer.settings.model import Settings, load_settings
from tests.reaping import Reaper
from tests.reliability_helpers import FakeClickHouse, RedisProxy, cluster_of
from tests.stream_helpers import Cluster

# Property tests explore new examples on every run, CI included: Hypothesis's own `ci` profile
# (chosen when CI is set) is derandomised, so it would replay the same examples forever. Ours
# keeps randomness, needs no example database and prints the blob of a failure; the run's seed
# is printed by scripts/test.sh (`--hypothesis-seed`). `repro` replays fixed examples.
for _name, _random in (("ci", True), ("repro", False)):
    hypothesis_settings.register_profile(
        _name, database=None, derandomize=not _random, print_blob=True, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])  # a shared CPU is no property failure
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "default"))

# Fixtures that start a service (per test process): tests using them stay together per module
# under pytest-xdist (`--dist loadgroup`), so a module's services start once, on one worker.
REAPER = pytest.StashKey["Reaper"]()
SERVICE_FIXTURES = {"redis_service", "kafka_service", "chdb_dir", "fake_ch", "tmp_path"}
# Modules whose checks lean on the CPU (skewed clocks, sustained rates, takeovers): one worker
# runs them one after another, never two of them at once.
HEAVY_MODULES = {"test_stream_skew", "test_standby_e2e", "test_reliability_load",
                 "test_reliability_failover", "test_reliability_shutdown"}


def pytest_configure(config: pytest.Config) -> None:
    """Reap every child process group, however this process ends (tests/reaping.py)."""
    reaper = Reaper()
    reaper.install()
    config.stash[REAPER] = reaper


def pytest_unconfigure(config: pytest.Config) -> None:
    """Kill what the tests left running (after every fixture's own teardown)."""
    reaper = config.stash.get(REAPER, None)
    if reaper is not None:
        leaked = reaper.close()
        if leaked:
            print(f"\nreaped {len(leaked)} child process(es) left running: {leaked}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """xdist groups: heavy modules together, service tests by module, the rest spread."""
    for item in items:
        module = getattr(item, "module", None)
        module = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if module in HEAVY_MODULES:
            item.add_marker(pytest.mark.xdist_group("heavy"))
        elif SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group(module))


@pytest.fixture(scope="session", autouse=True)
def _no_hard_exit_in_the_test_process() -> None:
    """Commands and Shutdowns run in-process must never os._exit the test runner (a spent
    watchdog would end pytest with the code of the test's stop, hiding every later test)."""
    set_hard_exit(False)


@pytest.fixture(scope="session")
def redis_service() -> Iterator[LocalService]:
    """One private redis-server for the test session."""
    svc = start_redis()
    yield svc
    svc.stop()


@pytest.fixture(scope="session")
def kafka_service() -> Iterator[LocalService]:
    """One tansu broker for the test session (tests use unique topic names)."""
    svc = start_tansu()
    yield svc
    svc.stop()


@pytest.fixture
def redis_url(redis_service: LocalService) -> str:
    """URL of the private Redis; the database is flushed before each test."""
    client = sync_redis.Redis(port=redis_service.port)
    client.flushall()
    client.close()
    return f"redis://127.0.0.1:{redis_service.port}/0"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """asyncio client on the private Redis."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def redis_sync(redis_url: str) -> Iterator[sync_redis.Redis]:
    """Synchronous client on the private Redis (for tests that drive child processes)."""
    client = sync_redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A real CA, client certificate and key (openssl), plus a file that is not PEM
    (tests/test_config_kafka.py, tests/test_config_errors.py)."""
    from tests.kafka_tls_helpers import make_pki

    root = tmp_path_factory.mktemp("pki")
    pki = make_pki(root)
    junk = root / "junk.pem"
    junk.write_text("not a certificate\n")
    return {"ca": str(pki.ca), "cert": str(pki.client_cert), "key": str(pki.client_key),
            "junk": str(junk)}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh STREAMER_DATA_DIR."""
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one embedded ClickHouse directory of this test process.

    chDB opens a single path per process ("EmbeddedServer already initialized with path"),
    and a path in a single process; tests share it and get an emptied database instead.
    """
    return tmp_path_factory.mktemp("chdb").resolve()


@pytest.fixture
def settings(redis_url: str, data_dir: Path, chdb_dir: Path) -> Settings:
    """Settings pointing at the private Redis and the session's embedded ClickHouse."""
    env = {
        "REDIS_URL": redis_url,
        "STREAMER_DATA_DIR": str(data_dir),
        "STREAMER_TABLE_STORE": "memory",
        "CLICKHOUSE_URL": f"chdb://{chdb_dir}",
    }
    return load_settings(env)


@pytest.fixture
async def clickhouse(settings: Settings) -> ClickHouse:
    """Embedded ClickHouse with the schema created in an emptied database."""
    ch = ClickHouse.from_settings(settings)
    await ch.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    await create_schema(ch)
    return ch


@pytest.fixture
def subprocess_env(settings: Settings) -> dict[str, str]:
    """Environment for running `streamer` as a child process against the test services."""
    env = dict(os.environ)
    env.update({k: str(v) for k, v in settings.masked().items() if "(derived)" not in k})
    env["REDIS_URL"] = settings.redis_url
    # The test process holds the session's chDB path; a child gets its own embedded
    # ClickHouse in STREAMER_DATA_DIR/clickhouse (seed it from a child process too).
    env["CLICKHOUSE_URL"] = ""
    return env


# ---- fault-injection fixtures of the reliability suite (tests/reliability_helpers.py) ----
@pytest.fixture
def cluster(kafka_service: LocalService, redis_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Workers of this test, killed at the end."""
    with cluster_of(kafka_service, redis_url, tmp_path) as c:
        yield c


@pytest.fixture
def fake_ch(tmp_path: Path) -> Iterator[FakeClickHouse]:
    """A breakable ClickHouse (chDB behind HTTP) in its own process."""
    fake = FakeClickHouse(tmp_path / "fake-ch").start()
    yield fake
    fake.stop()


@pytest.fixture
def proxy(redis_service: LocalService, redis_url: str) -> Iterator[RedisProxy]:
    """A proxy in front of the (flushed) test Redis that can hold the next MULTI/EXEC."""
    p = RedisProxy(redis_service.port).start()
    yield p
    p.release()
    p.stop()
