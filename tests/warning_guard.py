"""The warning guard (a pytest plugin that conftest loads): unexpected warnings fail their test.

Catch-alls log and carry on (a failed interim edit, a lease upkeep error, a message task's
last-resort handler); without this, a programming error one of them swallows would pass every
test. A test that provokes such a record on purpose says which with
``@pytest.mark.allow_warnings(pattern, ...)``: regular expressions searched in the message. Any
other record at WARNING or above, from any logger, fails the test, including those logged while
its fixtures shut down.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest


class WarningGuard(logging.Handler):
    """Keeps every WARNING-and-above record of the running test."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


GUARD = WarningGuard()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "allow_warnings(*patterns): warnings this test provokes on purpose (regexes searched in "
        "the message); any other WARNING-or-above record fails the test",
    )
    root = logging.getLogger()
    if GUARD not in root.handlers:
        root.addHandler(GUARD)


@pytest.fixture(autouse=True)
def no_unexpected_warnings(request: pytest.FixtureRequest) -> Iterator[None]:
    """Autouse, so set up first and torn down last: what the test's own fixtures log while
    they shut down (an app stopping, a client closing) counts too."""
    GUARD.records.clear()
    yield
    marker = request.node.get_closest_marker("allow_warnings")
    allowed = [re.compile(pattern) for pattern in marker.args] if marker else []
    unexpected = [
        record
        for record in GUARD.records
        if not any(pattern.search(record.getMessage()) for pattern in allowed)
    ]
    GUARD.records.clear()
    if unexpected:
        lines = [describe(record) for record in unexpected[:10]]
        pytest.fail("unexpected warnings were logged:\n" + "\n".join(lines), pytrace=False)


def describe(record: logging.LogRecord) -> str:
    text = f"  {record.levelname} {record.name}: {record.getMessage()}"
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        text += f" ({type(error).__name__}: {error})"
    return text
