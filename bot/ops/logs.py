"""Logging setup: readable text or one JSON object per line, the trace id of the answer being
handled on each record, and a filter that blanks every configured secret out of every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

REDACTED = "[redacted]"
# The answer a task is working on; each answer runs in its own task, so this is per answer.
TRACE_ID: ContextVar[str] = ContextVar("trace_id", default="")
# Structured fields a log call may pass with ``extra=``; JSON lines carry them as keys.
FIELDS = ("platform", "app", "outcome", "chunks", "duration_ms", "entry")
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class SecretFilter(logging.Filter):
    """Formats each record once and replaces any secret in it (keys, tokens, signing secrets).

    Secrets shorter than 6 characters are not scrubbed: they would blank ordinary words.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        text = message
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, REDACTED)
        if text != message or record.args:
            record.msg, record.args = text, None
        return True


class TraceFilter(logging.Filter):
    """Stamps each record with the trace id of the answer its task is handling ("" if none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", ""):
            record.trace_id = TRACE_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, trace_id and structured fields.

    orjson, not a JSON-logging library: this is the whole formatter, and orjson is already ours.
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if trace := getattr(record, "trace_id", ""):
            line["trace_id"] = trace
        line.update({k: getattr(record, k) for k in FIELDS if hasattr(record, k)})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return orjson.dumps(line, default=str).decode()


def build_handler(
    secrets: Iterable[str],
    *,
    fmt: str = "text",
    stream: TextIO | None = None,
    path: Path | None = None,
) -> logging.Handler:
    """A stderr (``stream``, or file at ``path``, created at its first record) handler:
    secrets scrubbed before formatting, trace ids added."""
    handler: logging.Handler
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    handler.addFilter(SecretFilter(secrets))
    handler.addFilter(TraceFilter())
    return handler


def setup_logging(
    level: str, secrets: Iterable[str], *, fmt: str = "text", path: Path | None = None
) -> None:
    """Readable one-line records (or JSON lines) on stderr, or appended to the file at ``path``;
    secrets scrubbed on every handler."""
    root = logging.getLogger()
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = [build_handler(secrets, fmt=fmt, path=path)]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries whose INFO lines are noise, or worse: httpx logs every request URL, and the
    WeChat/WeCom APIs carry their access_token in the query string."""
    for name in ("httpx", "httpcore", "alembic", "aiosqlite", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
