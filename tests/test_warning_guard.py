"""The warning guard itself: an unexpected warning fails its test, an expected one does not."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TESTS = """
import asyncio
import logging

import pytest

log = logging.getLogger("bot.somewhere")


def test_quiet():
    log.info("all is well")


def test_swallowed_error():
    try:
        {}["missing"]
    except Exception:
        log.warning("catch-all carried on", exc_info=True)


@pytest.mark.allow_warnings("^interim edit failed")
def test_expected_warning():
    log.warning("interim edit failed; the final answer will carry the text")


@pytest.mark.allow_warnings("^interim edit failed")
def test_another_warning_than_the_expected_one():
    log.warning("interim edit failed")
    log.error("answer failed")


@pytest.fixture
def noisy_teardown():
    yield
    log.warning("could not close cleanly")


def test_a_warning_while_fixtures_shut_down(noisy_teardown):
    pass


async def _background():
    raise RuntimeError("nobody awaited me")


def test_a_task_exception_nobody_retrieved():
    async def main():
        asyncio.get_running_loop().create_task(_background())
        await asyncio.sleep(0)
    asyncio.run(main())
"""


def test_unexpected_warnings_fail_and_expected_ones_pass(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=TESTS)
    result = pytester.runpytest("-p", "tests.warning_guard", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_swallowed_error*",
            "*WARNING bot.somewhere: catch-all carried on (KeyError: 'missing')*",
        ]
    )
    result.stdout.fnmatch_lines(["*ERROR bot.somewhere: answer failed*"])
    result.stdout.fnmatch_lines(["*WARNING bot.somewhere: could not close cleanly*"])
    result.stdout.fnmatch_lines(["*ERROR asyncio: Task exception was never retrieved*"])
