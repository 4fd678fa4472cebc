"""Logging setup, with a filter that blanks every configured secret out of every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

REDACTED = "[redacted]"


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


def setup_logging(level: str, secrets: Iterable[str]) -> None:
    """Readable one-line records on stderr; secrets scrubbed on every handler."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def quiet_libraries() -> None:
    """Libraries whose INFO lines are noise, or worse: httpx logs every request URL, and the
    WeChat/WeCom APIs carry their access_token in the query string."""
    for name in ("httpx", "httpcore", "alembic", "aiosqlite", "asyncio"):
        logging.getLogger(name).setLevel(logging.WARNING)
