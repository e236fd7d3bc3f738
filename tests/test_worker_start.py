"""Failed starts of the real worker, a child process each: one line naming the variable or
path, no traceback, non-zero exit well within 60 s; a SIGTERM around a failed start still ends
the process; a data directory that does not exist yet is created."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from streamer.demo.services import LocalService, free_port
from tests.ports import rerun_on_taken_port
from tests.stream_helpers import FAST_GROUP_ENV, WorkerProcess, unique
from tests.waiting import catches, wait_until

RETRY_UNTIL = re.compile(r"not usable yet .*retrying .* until (\S+Z)")

pytestmark = pytest.mark.timeout(180)
CONTRACT_STOP_S = 60  # the contract: a failed start ends the process within this


@pytest.fixture
def worker_env(kafka_service: LocalService, redis_url: str) -> dict[str, str]:
    """A worker environment on the test broker and Redis, its own topic, app id and port."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAFKA_", "REDIS_", "CLICKHOUSE_", "JOB_", "STREAMER_"))}
    topic = unique("start-events")
    env.update(FAST_GROUP_ENV)
    env.update({
        "REDIS_URL": redis_url, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{kafka_service.port}",
        "KAFKA_EVENTS_TOPIC": topic, "KAFKA_DLQ_TOPIC": topic + ".dlq",
        "STREAMER_APP_ID": unique("start-app"), "STREAMER_TOPIC_PARTITIONS": "2",
        "STREAMER_WEB_PORT": str(free_port()), "STREAMER_CLICKHOUSE_SINK": "false",
        "CLICKHOUSE_URL": f"http://127.0.0.1:{free_port()}",  # nobody listens: not needed here
    })
    return env


def start(env: dict[str, str], *prefix: str) -> subprocess.Popen[str]:
    """`python -m streamer worker` with stderr piped (and anything before it, e.g. setpriv)."""
    return subprocess.Popen([*prefix, sys.executable, "-m", "streamer", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def failed_start(env: dict[str, str], *prefix: str) -> tuple[int, str]:
    """Run a worker whose start must fail: (exit code, stderr); again on another web port if
    the first one was taken meanwhile (it must fail for its own reason)."""

    def run(with_port: dict[str, str]) -> tuple[int, str]:
        proc = start(with_port, *prefix)
        try:
            _, err = proc.communicate(timeout=CONTRACT_STOP_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise AssertionError(
                f"still running after {CONTRACT_STOP_S} s:\n{proc.communicate()[1]}") from None
        return proc.returncode, err

    return rerun_on_taken_port(run, env, lambda result: result[1])


def assert_one_line(err: str, *names: str) -> None:
    """Exactly one stderr line names every one of `names`; no traceback anywhere."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if all(n in line for n in names)]
    assert len(lines) == 1, err


class TestDataDir:
    """STREAMER_DATA_DIR: created when missing, one clear line when it cannot be used."""

    def test_a_missing_data_dir_is_created_with_the_memory_store(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Memory store and a nested data dir that does not exist: the worker gets ready."""
        data = tmp_path / "not" / "there" / "yet"
        env = {**worker_env, "STREAMER_TABLE_STORE": "memory", "STREAMER_DATA_DIR": str(data)}
        # Spawned here, not by WorkerProcess.start(): that one creates the data dir first.
        w = WorkerProcess(env, data, port=int(env["STREAMER_WEB_PORT"]), log_path=tmp_path / "w.log")
        log = open(tmp_path / "w.log", "wb")  # noqa: SIM115 - lives as long as the child
        w.proc = subprocess.Popen([sys.executable, "-m", "streamer", "worker"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
        try:
            w.wait_ready(90)
            assert data.is_dir()
            assert w.terminate() == 0
        finally:
            w.kill()
        assert "Traceback" not in w.tail(400)

    def test_a_data_dir_that_is_a_file(self, worker_env: dict[str, str], tmp_path: Path) -> None:
        """A file where the directory should be: exit 1, one line naming variable and path."""
        path = tmp_path / "a-file"
        path.write_text("")
        code, err = failed_start({**worker_env, "STREAMER_DATA_DIR": str(path)})
        assert code == 1
        assert_one_line(err, "STREAMER_DATA_DIR", str(path), "not a directory")

    def test_a_data_dir_without_permission(self, worker_env: dict[str, str], tmp_path: Path) -> None:
        """A data dir the worker's user may not create: exit 1, one line naming it."""
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o500)
        target = parent / "data"
        prefix: tuple[str, ...] = ()
        if os.geteuid() == 0:  # root ignores modes: run the worker as nobody instead
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv: cannot take away a permission")
            prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
            probe = subprocess.run([*prefix, sys.executable, "-c", "import streamer"],
                                   capture_output=True, text=True)
            if probe.returncode != 0:  # e.g. a checkout inside a 0700 directory
                pytest.skip(f"user nobody cannot import streamer from this checkout: {probe.stderr.strip()}")
        code, err = failed_start({**worker_env, "STREAMER_DATA_DIR": str(target)}, *prefix)
        assert code == 1, err
        assert_one_line(err, "STREAMER_DATA_DIR", str(target), "Permission denied")


class TestDependencies:
    """Kafka unreachable for too long, an embedded ClickHouse held by another process."""

    def test_kafka_unreachable_for_longer_than_the_start_timeout(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Nobody on the bootstrap port: exit 1 after the start timeout, naming both variables."""
        env = no_kafka(worker_env, tmp_path, start_timeout_s=3)
        code, err = failed_start(env)
        assert code == 1
        assert_one_line(err, "KAFKA_BOOTSTRAP_SERVERS", env["KAFKA_BOOTSTRAP_SERVERS"],
                        "STREAMER_START_TIMEOUT_SEC")

    def test_embedded_clickhouse_held_by_another_process(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """Another process holds STREAMER_DATA_DIR/clickhouse: exit 1, one line naming the path."""
        data = tmp_path / "data"
        holder = subprocess.Popen(
            [sys.executable, "-c", "import time, clickhouse_connect;"
             f"client = clickhouse_connect.get_client(dsn='chdb://{data / 'clickhouse'}');"
             "client.command('SELECT 1'); print('held', flush=True); time.sleep(600)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            env = {**worker_env, "CLICKHOUSE_URL": "", "STREAMER_DATA_DIR": str(data),
                   "STREAMER_TABLE_STORE": "memory"}
            code, err = failed_start(env)
        finally:
            holder.kill()
            holder.wait()
        assert code == 1
        assert_one_line(err, "embedded ClickHouse", str(data / "clickhouse"))


class TestSigtermAroundAFailedStart:
    """A SIGTERM while the start is failing, or just after it failed, still ends the process."""

    def test_sigterm_while_the_start_waits_for_kafka(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """SIGTERM during the Kafka retries: a clean stop, exit 0."""

        def run(env: dict[str, str]) -> tuple[int, str]:
            proc = start(env)
            seen = read_stderr_until(proc, lambda lines: "not usable yet" in lines[-1])
            code, err = signal_and_wait(proc, 1)
            return code, seen + err

        code, err = rerun_on_taken_port(
            run, no_kafka(worker_env, tmp_path, start_timeout_s=600), lambda result: result[1])
        assert code == 0, err
        assert "not usable yet" in err and "Traceback" not in err

    @pytest.mark.parametrize("signals", [1, 2])
    def test_sigterm_as_the_start_fails(
        self, worker_env: dict[str, str], tmp_path: Path, signals: int
    ) -> None:
        """SIGTERM(s) arriving as the start times out: the process ends, no traceback."""

        def run(env: dict[str, str]) -> tuple[int, str]:
            proc = start(env)
            seen = read_stderr_until(proc, lambda lines: "not usable yet" in lines[-1])
            due = RETRY_UNTIL.search(seen)  # the start deadline, to the second: about due then
            if due is not None:
                at_s = datetime.fromisoformat(due.group(1).replace("Z", "+00:00")).timestamp()
                wait_until(lambda: time.time() >= at_s or proc.poll() is not None, 30,
                           "the start deadline")
            code, err = signal_and_wait(proc, signals)
            return code, seen + err

        code, err = rerun_on_taken_port(
            run, no_kafka(worker_env, tmp_path, start_timeout_s=2), lambda result: result[1])
        assert code in (0, 1), err
        assert "Traceback" not in err
        assert RETRY_UNTIL.search(err), err  # the signal came while the start was failing

    def test_sigterm_after_the_failure_line_keeps_its_exit_code(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """A SIGTERM once the start failed and said so (the process is finishing): exit 1, not
        killed by the signal (the loop's handlers are gone by then; the code is decided)."""

        def run(env: dict[str, str]) -> tuple[int, str]:
            proc = start(env)
            seen = read_stderr_until(proc, lambda lines: lines[-1].startswith("streamer:"))
            code, err = signal_and_wait(proc, 1)
            return code, seen + err

        code, err = rerun_on_taken_port(
            run, no_kafka(worker_env, tmp_path, start_timeout_s=1), lambda result: result[1])
        assert "streamer: start did not finish" in err
        assert code == 1, err

    def test_sigterm_while_the_worker_is_still_loading(
        self, worker_env: dict[str, str], tmp_path: Path
    ) -> None:
        """SIGTERM as soon as the process has its handler (before Faust is even imported): exit 0."""

        def run(env: dict[str, str]) -> tuple[int, str]:
            proc = start(env)
            wait_until(lambda: catches(proc.pid, signal.SIGTERM) or proc.poll() is not None, 60,
                       "the stop sequence installed")
            return signal_and_wait(proc, 1)

        code, err = rerun_on_taken_port(
            run, {**worker_env, "STREAMER_DATA_DIR": str(tmp_path / "d")}, lambda result: result[1])
        assert code == 0, err
        assert "Traceback" not in err and "worker running" not in err


def no_kafka(env: dict[str, str], tmp_path: Path, start_timeout_s: int) -> dict[str, str]:
    """The worker environment with nobody on the bootstrap port."""
    return {**env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            "STREAMER_START_TIMEOUT_SEC": str(start_timeout_s), "STREAMER_DATA_DIR": str(tmp_path / "d")}


def read_stderr_until(proc: subprocess.Popen[str], done: Callable[[list[str]], bool]) -> str:
    """stderr lines up to the one after which done(lines so far) holds (or the end)."""
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:
        seen.append(line)
        if done(seen):
            break
    return "".join(seen)


def signal_and_wait(proc: subprocess.Popen[str], sigterms: int) -> tuple[int, str]:
    """Send SIGTERM `sigterms` times; (exit code, rest of stderr); killed if over the contract."""
    try:
        for _ in range(sigterms):
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=CONTRACT_STOP_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, err
