"""Dify's newer events as the user sees them: reasoning as a "Thinking…" status (its text only
when SHOW_REASONING asks), the New Agent's closing message replacing (never doubling) the
answer, TTS audio ignored, a Workflow's text_chunk, and a form answered or timed out elsewhere
shown as a status line on the resumed run."""

from __future__ import annotations

from bot.dify.client import DifyClient, build_http
from storage.units import Database
from tests.fakes.core import core_rig
from tests.fakes.dify import FakeDify, HumanFlow
from tests.fakes.dify_behaviours import Answer
from tests.fakes.replies import RecordingReply
from tests.test_reliability import message


async def answer(db: Database, dify: FakeDify, **options: object) -> RecordingReply:
    client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
    reply = RecordingReply()
    try:
        async with core_rig(db, client, **options) as rig:
            await rig.ask(message("what is 2+2", "C1:1.1"), reply)
    finally:
        await client._http.aclose()
    return reply


def statuses(reply: RecordingReply) -> list[str]:
    return [text for kind, text in reply.calls if kind == "status"]


async def test_reasoning_is_a_thinking_status_and_never_joins_the_answer(db: Database) -> None:
    async with FakeDify() as dify:
        dify.enqueue(
            "/chat-messages",
            Answer(chunks=["4"], reasoning=("2+2", " is 4"), tts=("SUQz",), first_delay=0.3),
        )
        reply = await answer(db, dify)
    assert "Thinking…" in statuses(reply)
    assert reply.final == ("finish", "4")  # no reasoning, no audio in the answer
    assert not any("2+2" in text for _, text in reply.calls)


async def test_show_reasoning_puts_the_reasoning_in_the_status(db: Database) -> None:
    async with FakeDify() as dify:
        dify.enqueue(
            "/chat-messages", Answer(chunks=["4"], reasoning=("2+2", " is 4"), first_delay=0.3)
        )
        reply = await answer(db, dify, show_reasoning=True)
    assert any(s.startswith("Thinking… 2+2") for s in statuses(reply))
    assert reply.final == ("finish", "4")


async def test_the_new_agents_closing_message_replaces_the_answer(db: Database) -> None:
    async with FakeDify(mode="agent") as dify:
        dify.enqueue("/chat-messages", Answer(chunks=["It is ", "10:04"]))
        reply = await answer(db, dify)
    assert reply.final == ("finish", "It is 10:04")  # not "It is 10:04It is 10:04"


async def test_a_workflows_text_chunks_are_the_answer(db: Database) -> None:
    async with FakeDify(mode="workflow") as dify:
        dify.enqueue("/workflows/run", Answer(chunks=["hello ", "workflow"]))
        reply = await answer(db, dify)
    assert reply.final == ("finish", "hello workflow")


async def test_a_form_answered_elsewhere_is_a_status_line_on_the_resumed_run(
    db: Database,
) -> None:
    from bot.answering.forms import FormDesk
    from bot.texts import Texts
    from storage.forms import FormStore
    from storage.journal import Journal

    # Chunks 0.2 s apart, as an LLM streams: the status is up while the text comes.
    async with FakeDify(flow=HumanFlow(), version="1.14.1", chunk_delay=0.2) as dify:
        client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
        desk = FormDesk(FormStore(db), Journal(db), texts=Texts("en"))
        first, second = RecordingReply(), RecordingReply()
        try:
            async with core_rig(db, client, forms=desk) as rig:
                await rig.ask(message("ship it?", "C1:2.1"), first)
                await rig.ask(message("fine", "C1:2.2"), second)
                await rig.ask(message("1", "C1:2.3"), third := RecordingReply())
        finally:
            await client._http.aclose()
    assert "Review: Approve" in statuses(third)  # human_input_form_filled
    assert third.final == ("finish", "after form: action=approve note=fine")
