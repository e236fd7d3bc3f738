"""The live holder in one process: reload results, metrics, the watcher, SIGHUP, the runner."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest
from redis.asyncio import Redis

from streamer.cache.lock import RedisLock
from streamer.jobs.base import Job
from streamer.jobs.runner import JobRunner
from streamer.ops.metrics import (
    CONFIG_GENERATION,
    CONFIG_RESTART_PENDING,
    REGISTRY,
)
from streamer.settings.live import LiveSettings, start_reloading, watch
from streamer.settings.model import load_settings
from tests.waiting import await_until

pytestmark = pytest.mark.timeout(60)


def reloads(result: str) -> float:
    value = REGISTRY.get_sample_value("streamer_config_reloads_total", {"result": result})
    return value or 0.0


def holder(tmp_path: Path, text: str, **env: str) -> tuple[LiveSettings, Path]:
    path = tmp_path / "streamer.conf"
    path.write_text(text)
    full = {"STREAMER_CONFIG_FILE": str(path), **env}
    return LiveSettings(load_settings(full), full), path


class TestReload:
    """LiveSettings.reload: applied, rejected, unchanged, restart-only."""

    def test_applied_changes_current_and_generation(self, tmp_path: Path) -> None:
        """A new top-K applies: current changes, the generation and its gauge move by one."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        before = reloads("applied")
        path.write_text("JOB_TRENDING_TOPK=3\n")
        assert live.reload("test") == "applied"
        assert live.current.job_trending_topk == 3 and live.generation == 2
        assert CONFIG_GENERATION._value.get() == 2
        assert reloads("applied") == before + 1

    def test_rejected_keeps_the_running_config_and_logs_one_line(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An invalid value: one error line naming the variable, the rule and the file line."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        path.write_text("# tuning\nJOB_TRENDING_TOPK=three\n")
        before = reloads("rejected")
        with caplog.at_level(logging.INFO, "streamer.config"):
            assert live.reload("test") == "rejected"
        assert live.current.job_trending_topk == 50 and live.generation == 1
        assert reloads("rejected") == before + 1
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(errors) == 1 and "\n" not in errors[0]
        assert "JOB_TRENDING_TOPK: must be a whole number > 0" in errors[0]
        assert f"{path} line 2" in errors[0]

    def test_a_bad_line_is_rejected_too(self, tmp_path: Path) -> None:
        """A syntax error anywhere rejects the whole new file, valid lines included."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        path.write_text("JOB_TRENDING_TOPK=3\noops\n")
        assert live.reload("test") == "rejected"
        assert live.current.job_trending_topk == 50

    def test_unchanged(self, tmp_path: Path) -> None:
        """Same values (comments changed only): nothing applied, the generation stays."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        path.write_text("# only a comment more\nJOB_TRENDING_TOPK = 50\n")
        before = reloads("unchanged")
        assert live.reload("test") == "unchanged"
        assert live.generation == 1 and reloads("unchanged") == before + 1

    def test_restart_only_is_reported_not_applied(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A topic change beside a top-K change: top-K applies, the topic is only reported."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\nKAFKA_EVENTS_TOPIC=a\n")
        path.write_text("JOB_TRENDING_TOPK=5\nKAFKA_EVENTS_TOPIC=b\n")
        with caplog.at_level(logging.INFO, "streamer.config"):
            assert live.reload("test") == "applied"
        assert live.current.job_trending_topk == 5 and live.current.kafka_events_topic == "a"
        assert CONFIG_RESTART_PENDING._value.get() == 1
        assert any("KAFKA_EVENTS_TOPIC 'a' -> 'b'" in r.getMessage()
                   and "needs a restart" in r.getMessage() for r in caplog.records)
        path.write_text("JOB_TRENDING_TOPK=5\nKAFKA_EVENTS_TOPIC=a\n")
        assert live.reload("test") == "unchanged"
        assert CONFIG_RESTART_PENDING._value.get() == 0

    def test_the_environment_is_the_one_at_start(self, tmp_path: Path) -> None:
        """Names only in the environment keep their start value; removing a file line falls back."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=5\n", JOB_TRENDING_TOPK="9")
        assert live.current.job_trending_topk == 5
        path.write_text("")
        assert live.reload("test") == "applied"
        assert live.current.job_trending_topk == 9

    def test_log_level_applies(self, tmp_path: Path) -> None:
        """LOG_LEVEL is reloadable: the root logger's level follows."""
        root = logging.getLogger()
        handlers, level = root.handlers[:], root.level
        try:
            live, path = holder(tmp_path, "LOG_LEVEL=INFO\n")
            path.write_text("LOG_LEVEL=ERROR\n")
            assert live.reload("test") == "applied"
            assert root.level == logging.ERROR
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)


class TestWatcher:
    """The file watcher and SIGHUP, in this process."""

    async def test_a_changed_file_is_applied(self, tmp_path: Path) -> None:
        """Rewrite the file: the watcher applies it without a signal."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        stop = asyncio.Event()
        task = asyncio.create_task(watch(live, stop, poll_s=0.05))
        await asyncio.sleep(0.2)
        tmp = tmp_path / "next.conf"  # replaced the way a ConfigMap volume does: atomically
        tmp.write_text("JOB_TRENDING_TOPK=4\n")
        os.replace(tmp, path)
        await await_until(lambda: live.current.job_trending_topk == 4, 20, "top-K 4 applied")
        stop.set()
        await task

    async def test_sighup_reloads(self, tmp_path: Path) -> None:
        """SIGHUP reloads at once: unchanged first, then the rewritten file applies."""
        live, path = holder(tmp_path, "JOB_TRENDING_TOPK=50\n")
        stop = asyncio.Event()
        task = start_reloading(live, stop)
        before = reloads("unchanged")
        os.kill(os.getpid(), signal.SIGHUP)
        await await_until(lambda: reloads("unchanged") == before + 1, 20, "one unchanged reload")
        path.write_text("JOB_TRENDING_TOPK=8\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await await_until(lambda: live.current.job_trending_topk == 8, 20, "top-K 8 applied")
        stop.set()
        await task
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)


class CountingJob(Job):
    """Counts runs; its interval follows JOB_SUGGESTION_INTERVAL_SEC of the holder."""

    name = "counting"
    exclusive = False

    def __init__(self, live: LiveSettings) -> None:
        self.live = live
        self.runs = 0
        self.refresh()

    def refresh(self) -> None:
        self.interval_s = self.live.current.job_suggestion_interval_sec

    async def run(self, lock: RedisLock | None) -> str:
        self.runs += 1
        return "ok"


async def test_runner_replans_its_wait_after_a_reload(tmp_path: Path, redis_client: Redis) -> None:
    """An hour-long wait is cut short: after a reload to 1 s the next runs come at once."""
    live, path = holder(tmp_path, "JOB_SUGGESTION_INTERVAL_SEC=3600\n")
    job = CountingJob(live)
    runner = JobRunner([job], redis_client, 1, live=live)
    task = asyncio.create_task(runner.run_forever())
    await await_until(lambda: job.runs == 1, 20, "the first run")
    path.write_text("JOB_SUGGESTION_INTERVAL_SEC=1\n")
    assert live.reload("test") == "applied"
    await await_until(lambda: job.runs >= 3, 20, "three runs")
    runner.stop()
    await task
