"""Structured logs: JSON or text, level from settings, correlation ids, never a secret."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from streamer.ops.logging import (
    CORRELATION_ID,
    JsonFormatter,
    TextFormatter,
    correlation_scope,
    new_correlation_id,
    setup_logging,
)
from streamer.redaction import mask_url, redact

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def capture() -> Iterator[io.StringIO]:
    """Root logging into a buffer through streamer's JSON formatter, restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    token = CORRELATION_ID.set("-")
    yield buf
    CORRELATION_ID.reset(token)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    """Every captured line, parsed as JSON (fails on a non-JSON line)."""
    return [orjson.loads(ln) for ln in buf.getvalue().splitlines()]


class TestRedact:
    """URL passwords are masked wherever they appear."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (f"http://user:{SECRET}@ch:8123", "http://user:***@ch:8123"),
            (f"redis://:{SECRET}@r:6379/0 and rediss://u:{SECRET}@x/1",
             "redis://:***@r:6379/0 and rediss://u:***@x/1"),
            ("http://ch:8123/?q=a@b", "http://ch:8123/?q=a@b"),
            ("chdb:///var/lib/x", "chdb:///var/lib/x"),
            ("no url here: a:b@c", "no url here: a:b@c"),
            (f"ClickHouse http://ch:8123/?user=u&password={SECRET}: refused",
             "ClickHouse http://ch:8123/?user=u&password=*** refused"),
            (f"redis://u:{SECRET}@h1,rediss://u:{SECRET}@h2/0.",
             "redis://u:***@h1,rediss://u:***@h2/0."),
            (f"(redis+sentinel://:{SECRET}@s1:1,s2:2/m/0)", "(redis+sentinel://:***@s1:1,s2:2/m/0)"),
            (f"Redis redis://u:p@{SECRET}@h:1/0: refused", "Redis redis://u:***@h:1/0: refused"),
        ],
    )
    def test_masks_only_passwords(self, text: str, expected: str) -> None:
        """The password goes, user, host, port and path stay for debugging."""
        assert redact(text) == expected

    @pytest.mark.parametrize("url", [
        "redis://127.0.0.1:6379/0", f"redis://:{SECRET}@h:1/0", f"redis://u:{SECRET}@[bad/0",
        f"rediss://h:1/0?password={SECRET}&db=2", f"https://u:a:{SECRET}@h:8443/x",
        f"redis+sentinel://s1:1/m?sentinel_password={SECRET}", f"rediss+cluster://u:{SECRET}@n1:1,n2:2",
    ])
    def test_a_url_in_a_line_is_masked_as_settings_mask_it(self, url: str) -> None:
        """Log lines and settings output share one masking: a URL inside a text comes out as
        mask_url prints it alone."""
        assert redact(f"connect to {url} failed") == f"connect to {mask_url(url)} failed"
        assert SECRET not in redact(f"connect to {url} failed")

    def test_a_log_line_masks_a_query_password(self, capture: io.StringIO) -> None:
        """A DSN with `password=` in a log message reaches the output masked."""
        logging.getLogger("streamer.test").warning("ClickHouse http://ch:8123/?password=%s down", SECRET)
        (rec,) = lines(capture)
        assert rec["msg"] == "ClickHouse http://ch:8123/?password=*** down"


class TestJsonLines:
    """LOG_FORMAT=json: one parseable object per line."""

    def test_fields(self, capture: io.StringIO) -> None:
        """ts, level, logger, msg and correlation_id, plus structured extras."""
        cid = new_correlation_id("publish")
        logging.getLogger("streamer.test").info("published %d posts", 50, extra={"window_ms": 7})
        (rec,) = lines(capture)
        assert rec["level"] == "info" and rec["logger"] == "streamer.test"
        assert rec["msg"] == "published 50 posts"
        assert rec["correlation_id"] == cid and cid.startswith("publish-")
        assert rec["window_ms"] == 7
        assert str(rec["ts"]).endswith("Z")

    def test_secrets_never_written(self, capture: io.StringIO) -> None:
        """Passwords in messages, arguments, extras and tracebacks are masked."""
        log = logging.getLogger("streamer.test")
        url = f"http://streamer:{SECRET}@clickhouse:8123"
        log.warning("cannot reach %s", url, extra={"dsn": url, "redis_password": SECRET})
        try:
            raise ConnectionError(f"refused by {url}")
        except ConnectionError:
            log.exception("insert failed")
        out = capture.getvalue()
        assert SECRET not in out
        first, second = lines(capture)
        assert first["msg"] == "cannot reach http://streamer:***@clickhouse:8123"
        assert first["redis_password"] == "***"
        assert "refused by http://streamer:***@clickhouse:8123" in str(second["exc"])

    def test_text_format_masks_too(self) -> None:
        """The readable format carries the correlation id and masks the same way."""
        record = logging.makeLogRecord(
            {"name": "streamer.x", "levelname": "INFO", "msg": f"to redis://:{SECRET}@r:1/0",
             "token": "abc"}
        )
        with correlation_scope("reconcile") as cid:
            line = TextFormatter().format(record)
        assert f"[{cid}]" in line and SECRET not in line and "token=***" in line


class TestCorrelation:
    """One correlation id per run, isolated between concurrent runs."""

    def test_scope_restores_previous_id(self) -> None:
        """A scope sets a fresh id and puts the outer one back."""
        outer = new_correlation_id("job")
        with correlation_scope("publish") as inner:
            assert CORRELATION_ID.get() == inner != outer
        assert CORRELATION_ID.get() == outer

    async def test_concurrent_runs_keep_their_own_ids(self, capture: io.StringIO) -> None:
        """Interleaved tasks log under their own id (context variables are per task)."""

        async def run(name: str) -> str:
            cid = new_correlation_id(name)
            for _ in range(3):
                logging.getLogger("streamer.test").info("step of %s", name)
                await asyncio.sleep(0)
            return cid

        ids = dict(zip(("a", "b"), await asyncio.gather(run("a"), run("b")), strict=True))
        steps = [r for r in lines(capture) if str(r["msg"]).startswith("step of ")]
        assert len(steps) == 6
        for rec in steps:
            assert rec["correlation_id"] == ids[str(rec["msg"]).removeprefix("step of ")]


class TestSetup:
    """setup_logging picks format and level for the whole process."""

    def test_level_and_format(self, capsys: pytest.CaptureFixture[str]) -> None:
        """WARNING drops info lines; json emits JSON on stderr."""
        root = logging.getLogger()
        saved_handlers, saved_level = root.handlers[:], root.level
        try:
            setup_logging("WARNING", "json")
            logging.getLogger("streamer.test").info("hidden")
            logging.getLogger("streamer.test").warning("shown")
        finally:
            root.handlers[:] = saved_handlers
            root.setLevel(saved_level)
        err = capsys.readouterr().err.splitlines()
        assert [orjson.loads(ln)["msg"] for ln in err] == ["shown"]


class TestProcess:
    """A real `streamer` process honours LOG_FORMAT and LOG_LEVEL and leaks no password."""

    def test_cli_logs_json_without_secrets(self, redis_url: str, tmp_path: Path) -> None:
        """A failing ClickHouse job run logs JSON lines with its correlation id, password masked."""
        env = {
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "REDIS_URL": redis_url,
            "CLICKHOUSE_URL": f"http://streamer:{SECRET}@127.0.0.1:1/",  # nothing listens there
            "JOB_CH_TIMEOUT_MS": "2000",
            "STREAMER_DATA_DIR": str(tmp_path / "data"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "streamer", "jobs", "--once", "--job", "suggestions"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 1
        assert SECRET not in proc.stdout + proc.stderr
        records = [orjson.loads(ln) for ln in proc.stderr.splitlines() if ln.strip()]
        assert any(r["level"] == "debug" for r in records)
        failed = [r for r in records if r["level"] == "error" and r["logger"].startswith("streamer")]
        assert failed and str(failed[0]["correlation_id"]).startswith("suggestions-")
