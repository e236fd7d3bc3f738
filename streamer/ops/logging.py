"""Structured logging: JSON or readable text, with a per-run correlation id."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import secrets
import sys
import time
from collections.abc import Iterator
from typing import Any

import orjson

from streamer.redaction import MASK, redact

CORRELATION_ID: contextvars.ContextVar[str] = contextvars.ContextVar("correlation_id", default="-")
_STD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_SECRET_KEYS = ("password", "passwd", "secret", "token", "api_key", "apikey", "credential")


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
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + (
            f".{int(record.msecs):03d}Z")
        msg = redact(record.getMessage())
        line = f"{ts} {record.levelname:<7} {record.name} [{CORRELATION_ID.get()}] {msg}"
        if extras:
            line += f" {extras}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        return line


def iso_ms(ms: int | float) -> str:
    """An epoch-ms instant as ISO-8601 UTC (`2026-01-02T03:04:05Z`, `.123` when not whole)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000))
    return stamp + (f".{int(ms % 1000):03d}Z" if ms % 1000 else "Z")


def window_text(start_ms: int, end_ms: int) -> str:
    """A half-open window `[start, end)` in ISO-8601 UTC, for log lines."""
    return f"[{iso_ms(start_ms)}, {iso_ms(end_ms)})"


def error_text(exc: BaseException) -> str:
    """`Type: message` once (aiokafka's errors already start their text with their type)."""
    name, text = type(exc).__name__, str(exc)
    return text if text.startswith(f"{name}:") or text == name else f"{name}: {text}"


# Records of libraries that retry on their own, while our own WARNING says once what is being
# retried and until when: (logger, message start). Shown only with LOG_LEVEL=DEBUG.
RETRY_NOISE: tuple[tuple[str, str], ...] = (
    ("aiokafka", "Unable connect to"),
    ("aiokafka", "Unable to request metadata"),
    ("aiokafka", "Unable to update metadata"),
    ("urllib3.connectionpool", "Retrying"),
    ("clickhouse_connect", "Unexpected Http Driver Exception"),
)


class _RetryNoise(logging.Filter):
    """Drops the per-retry records of RETRY_NOISE (the error reaches our own log lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not any(record.name.startswith(name) and msg.startswith(start)
                       for name, start in RETRY_NOISE)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Configure the root logger once for the process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    if logging.getLevelName(level) > logging.DEBUG:
        handler.addFilter(_RetryNoise())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiokafka", "faust", "mode", "kafka", "urllib3", "clickhouse_connect"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
