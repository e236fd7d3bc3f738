"""Structured logging: JSON or readable text, with a per-run correlation id."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

CORRELATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# `scheme://user:password@` -> `scheme://user:***@` (a password never contains `/`, `@`, space).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:@/\s]*):[^@/\s]+@")
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")
MASK = "***"


def redact(text: str) -> str:
    """Mask the password of every URL in a text, so a log line never carries one."""
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields, with secret-named ones and URL passwords masked."""
    out: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STD_ATTRS or key.startswith("_"):
            continue
        if any(word in key.lower() for word in _SECRET_KEYS):
            out[key] = MASK
        else:
            out[key] = redact(value) if isinstance(value, str) else value
    return out


def new_correlation_id(prefix: str) -> str:
    """Set and return a fresh correlation id for the current task."""
    cid = f"{prefix}-{secrets.token_hex(4)}"
    CORRELATION_ID.set(cid)
    return cid


@contextlib.contextmanager
def correlation_scope(prefix: str) -> Iterator[str]:
    """A fresh correlation id for one run (publish, reconcile, job), restored afterwards."""
    token = CORRELATION_ID.set(f"{prefix}-{secrets.token_hex(4)}")
    try:
        yield CORRELATION_ID.get()
    finally:
        CORRELATION_ID.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "correlation_id": CORRELATION_ID.get(),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


class TextFormatter(logging.Formatter):
    """Readable single lines with the correlation id."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        ts = time.strftime("%H:%M:%S", time.localtime(record.created))
        msg = redact(record.getMessage())
        line = f"{ts} {record.levelname:<7} {record.name} [{CORRELATION_ID.get()}] {msg}"
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "faust", "mode", "kafka"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
