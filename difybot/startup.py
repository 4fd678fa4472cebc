"""The startup funnel: whatever stops a command becomes one line on stderr (or one JSON object
with ``--json``) and an exit status, 2 for configuration and 1 for a missing dependency."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

from bot.errors import ConfigError, DifybotError

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 1
EXIT_INTERRUPTED = 130


def funnel(body: Callable[[], int], *, as_json: bool = False) -> int:
    """Run a command's ``body``; our own errors end it with one line, no traceback. Whatever
    the body opened, it closes on its way out (``async with``), so nothing is left to warn."""
    try:
        return body()
    except ConfigError as exc:
        return report(exc, EXIT_CONFIG, as_json=as_json)
    except DifybotError as exc:
        return report(exc, EXIT_UNAVAILABLE, as_json=as_json)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def report(exc: DifybotError, status: int, *, as_json: bool, err: TextIO | None = None) -> int:
    message = one_line(str(exc))
    if as_json:
        kind = "configuration" if status == EXIT_CONFIG else "unavailable"
        print(json.dumps({"ok": False, "error": {"kind": kind, "message": message}}))
        return status
    prefix = "configuration error: " if status == EXIT_CONFIG else ""
    print(f"difybot: {prefix}{message}", file=err or sys.stderr)
    return status


def one_line(text: str) -> str:
    return "; ".join(part.strip() for part in text.splitlines() if part.strip())
