"""The run-wide secret scan itself: it notices a secret in a message, its args or a traceback."""

from __future__ import annotations

import logging

from tests.conftest import SecretScan


def record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("bot.test", logging.WARNING, __file__, 1, message, args, info)


def test_the_scan_catches_configured_and_issued_secrets() -> None:
    scan = SecretScan()
    scan.emit(record("calling Slack with %s", "xoxb-test-token"))
    scan.emit(record("GET /cgi-bin/message/custom/send?access_token=wechat-token-12"))
    try:
        raise RuntimeError("Bearer app-test-key refused")
    except RuntimeError as exc:
        scan.emit(record("Dify said no", exc=exc))
    scan.emit(record("answered trace=abc platform=slack"))  # nothing secret here
    assert scan.records == 4
    assert len(scan.leaks) == 3
