"""ProgressiveReply on a manual clock: throttling, coalescing, one edit in flight, the final."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest

from bot.answering.progressive import ProgressiveReply
from bot.contract import ReplyCapabilities
from bot.models import Answer
from bot.ops.pace import GC_THRESHOLDS, MAX_STRETCH, LoadGauge, settle_startup_objects
from tests.fakes.replies import ManualClock, RecordingReply


def progressive(
    reply: RecordingReply, clock: ManualClock, interval: float = 1.0
) -> ProgressiveReply:
    return ProgressiveReply(reply, interval=interval, clock=clock, sleep=clock.sleep)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_first_delta_is_shown_at_once_then_throttled_and_coalesced() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("Hel")
    await settle()
    assert reply.of("update") == ["Hel"]
    for piece in ["lo", ", ", "wor", "ld"]:  # a burst inside one interval
        p.add(piece)
        await settle()
    assert reply.of("update") == ["Hel"]
    await clock.advance(0.99)
    assert reply.of("update") == ["Hel"]
    await clock.advance(0.01)
    assert reply.of("update") == ["Hel", "Hello, world"]  # the burst became one edit
    assert p.edits == 2  # what the per-message log line reports
    await p.finish(Answer())
    assert reply.final == ("finish", "Hello, world")


async def test_text_received_before_a_pause_is_shown_when_the_interval_passes() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("a")
    await settle()
    p.add("b")  # then Dify goes quiet (a long tool call)
    await clock.advance(1.0)
    assert reply.of("update") == ["a", "ab"]
    await clock.advance(10.0)
    assert reply.of("update") == ["a", "ab"]  # nothing new, no redundant edit
    assert clock.sleeping == 0  # and no timer left ticking for nothing


async def test_never_two_edits_in_flight_and_the_final_waits_for_the_edit() -> None:
    clock, gate = ManualClock(), asyncio.Event()
    reply = RecordingReply(gate=gate)
    p = progressive(reply, clock, interval=0.0)
    p.add("one")
    await settle()
    p.add(" two")
    p.add(" three")
    await settle()
    assert reply.in_flight == 1 and reply.of("update") == ["one"]
    finishing = asyncio.create_task(p.finish(Answer()))
    await settle()
    assert not finishing.done()  # the slow edit is still out
    gate.set()
    await finishing
    assert reply.max_in_flight == 1
    assert reply.final == ("finish", "one two three")
    assert reply.calls[-1] == ("finish", "one two three")


@pytest.mark.allow_warnings(r"^could not show an interim edit")
async def test_failed_interim_edit_does_not_lose_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, reply = ManualClock(), RecordingReply(fail_updates=5)
    p = progressive(reply, clock)
    p.add("partial")
    await settle()
    p.add(" more")
    await p.finish(Answer(message_id="m1"))
    assert reply.final == ("finish", "partial more")
    assert reply.answers[0].message_id == "m1"
    (logged,) = caplog.records  # with the platform's error, for whoever reads the log
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], RuntimeError)


async def test_replace_and_status_are_coalesced_with_text() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.set_status("Searching…")
    await settle()
    p.add("raw")
    p.replace("moderated")
    await clock.advance(1.0)
    assert reply.of("status") == ["Searching…"]
    assert reply.of("update") == ["moderated"]
    await p.fail("(interrupted)")
    assert reply.of("status")[-1] == ""  # the status line is cleared before the end
    assert reply.final == ("fail", "moderated|(interrupted)")


async def test_non_editable_platform_gets_only_the_final_answer() -> None:
    clock = ManualClock()
    reply = RecordingReply(capabilities=ReplyCapabilities(can_edit=False, max_length=2048))
    p = progressive(reply, clock)
    for piece in ["a", "b", "c"]:
        p.add(piece)
        await clock.advance(5)
    await p.finish(Answer())
    assert reply.calls == [("finish", "abc")]


async def test_interval_defaults_to_the_platform_capability() -> None:
    clock = ManualClock()
    reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=3.0))
    p = ProgressiveReply(reply, clock=clock, sleep=clock.sleep)
    p.add("x")
    await settle()
    p.add("y")
    await clock.advance(2.9)
    assert reply.of("update") == ["x"]
    await clock.advance(0.1)
    assert reply.of("update") == ["x", "xy"]


async def test_close_cancels_pending_timer() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("x")
    await settle()
    p.add("y")
    await settle()
    assert clock.sleeping == 1
    await p.close()
    await clock.advance(5)
    assert reply.of("update") == ["x"]


async def test_an_answer_that_ends_at_once_gets_no_interim_edit() -> None:
    """A short answer arrives with its end in one network read: the edit it scheduled would be
    overwritten by the final within milliseconds, so it is not sent (it costs a rate-limited
    call on platforms like Slack)."""
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("Short answer.")
    await p.finish(Answer())
    assert reply.of("update") == []
    assert reply.final == ("finish", "Short answer.")


async def test_a_configured_interval_overrides_the_platforms() -> None:
    clock = ManualClock()
    reply = RecordingReply(capabilities=ReplyCapabilities(min_interval=1.0))
    p = progressive(reply, clock, interval=2.5)  # EDIT_INTERVAL_SECONDS, say
    p.add("x")
    await settle()
    p.add("y")
    await clock.advance(2.4)
    assert reply.of("update") == ["x"]
    await clock.advance(0.1)
    assert reply.of("update") == ["x", "xy"]


async def test_under_load_the_interval_stretches_but_the_first_text_goes_at_once() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = ProgressiveReply(reply, interval=1.0, clock=clock, sleep=clock.sleep, stretch=lambda: 3.0)
    p.add("a")
    await settle()
    assert reply.of("update") == ["a"]  # the first words are never held back
    p.add("b")
    await clock.advance(2.9)
    assert reply.of("update") == ["a"]
    await clock.advance(0.1)
    assert reply.of("update") == ["a", "ab"]
    await p.finish(Answer())
    assert reply.final == ("finish", "ab")


async def test_text_that_arrives_during_an_edit_follows_it_without_another_delta() -> None:
    """The stream may pause right after a delta that came while an edit was out: that text is
    shown when the interval has passed, not held back until Dify sends more."""
    clock, gate = ManualClock(), asyncio.Event()
    reply = RecordingReply(gate=gate)
    p = progressive(reply, clock)
    p.add("one")
    await settle()
    assert reply.in_flight == 1
    p.add(" two")  # the edit of "one" is still out; then Dify goes quiet
    await clock.advance(0.5)
    gate.set()
    await settle()
    assert reply.of("update") == ["one"]  # the interval runs from the start of the last edit
    await clock.advance(0.5)
    assert reply.of("update") == ["one", "one two"]


async def test_a_status_that_changes_during_an_edit_follows_it() -> None:
    clock, gate = ManualClock(), asyncio.Event()
    reply = RecordingReply(gate=gate)
    p = progressive(reply, clock)
    p.add("one")
    await settle()
    p.set_status("Searching…")
    gate.set()
    await clock.advance(1.0)
    assert reply.of("status") == ["Searching…"]
    assert reply.of("update") == ["one"]  # the text did not change: no redundant edit


@pytest.mark.parametrize("ending", ["finish", "fail"])
@pytest.mark.allow_warnings("^could not clear the status line")
async def test_a_status_line_that_cannot_be_cleared_does_not_cost_the_answer(ending: str) -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.set_status("Searching…")
    p.add("the answer")
    await settle()
    assert reply.of("status") == ["Searching…"]
    reply.fail_status = True  # the platform refuses to clear it
    if ending == "finish":
        await p.finish(Answer())
        assert reply.final == ("finish", "the answer")
    else:
        await p.fail("(interrupted)")
        assert reply.final == ("fail", "the answer|(interrupted)")
    assert reply.of("status") == ["Searching…", ""]


async def test_the_status_is_cleared_only_when_one_was_shown() -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("plain")
    await settle()
    await p.finish(Answer())
    assert reply.calls == [("update", "plain"), ("finish", "plain")]


async def test_finish_with_a_text_delivers_that_text() -> None:
    """The answering step passes the workflow's outputs, or the "no answer" text, when Dify
    streamed no text, and that is what the user must see."""
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    await p.finish(Answer(), text="from the workflow's outputs")
    assert reply.final == ("finish", "from the workflow's outputs")
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    p.add("streamed")
    await settle()
    await p.finish(Answer(), text="streamed, then moderated")
    assert reply.final == ("finish", "streamed, then moderated")


async def test_close_cancels_the_edit_in_flight_and_nothing_is_sent_after() -> None:
    clock, gate = ManualClock(), asyncio.Event()
    reply = RecordingReply(gate=gate)
    p = progressive(reply, clock, interval=0.0)
    p.add("one")
    await settle()
    assert reply.in_flight == 1
    closing = asyncio.create_task(p.close())
    try:
        await settle()
        assert closing.done()  # it did not wait for the platform to answer
        assert (reply.cancelled, reply.in_flight) == (1, 0)
        p.add(" two")
        p.replace("three")
        p.set_status("Searching…")
        await clock.advance(5)
        assert reply.calls == [("update", "one")]
    finally:
        gate.set()
        await closing


@pytest.mark.allow_warnings(r"^could not show the start of a reply")
async def test_start_shows_a_sign_of_life_and_a_failing_one_costs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, reply = ManualClock(), RecordingReply()
    p = progressive(reply, clock)
    await p.start()
    assert reply.calls == [("start", "")]
    broken = RecordingReply(fail_start=True)
    p = progressive(broken, clock)
    await p.start()
    p.add("still answered")
    await p.finish(Answer())
    assert broken.final == ("finish", "still answered")
    (logged,) = caplog.records
    assert logged.getMessage() == "could not show the start of a reply"
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], RuntimeError)


def test_the_load_gauge_stretches_with_event_loop_lag() -> None:
    gauge = LoadGauge()
    assert gauge.stretch() == 1.0
    for _ in range(30):
        gauge.observe(0.001)  # on time: nothing to shed
    assert gauge.stretch() == 1.0
    for _ in range(30):
        gauge.observe(0.025)  # 25 ms late: one more interval
    assert 1.9 < gauge.stretch() < 2.1
    gauge.observe(5.0)  # one long stall moves it, bounded
    assert gauge.stretch() == MAX_STRETCH
    for _ in range(40):
        gauge.observe(0.0)
    assert gauge.stretch() == 1.0


async def test_the_load_gauge_measures_a_blocked_loop() -> None:
    gauge = LoadGauge()
    gauge.start()
    try:
        await asyncio.sleep(0.06)
        for _ in range(3):
            busy_until = time.perf_counter() + 0.08  # CPU work holds the loop
            while time.perf_counter() < busy_until:
                pass
            await asyncio.sleep(0.06)
        assert gauge.lag > 0.01 and gauge.stretch() > 1.0
    finally:
        await gauge.stop()


def test_startup_objects_are_frozen_out_of_collections() -> None:
    before = gc.get_threshold()
    try:
        settle_startup_objects()
        assert gc.get_freeze_count() > 1000  # every module and class loaded so far
        assert gc.get_threshold() == GC_THRESHOLDS
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
