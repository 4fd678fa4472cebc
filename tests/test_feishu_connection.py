"""End to end: Feishu's long connection (the fake's websocket endpoint), card buttons and
files both ways, through the real ``difybot serve`` wiring."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.dify import Answer, FakeDify, UploadedFile
from tests.fakes.dify_state import signed_url
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import FeishuCallbacks, Person
from tests.fakes.feishu_store import FeishuMessage, Media
from tests.fakes.wechat_app import Running, difybot

USER = "ou_84aad35d084aa403a838cf73ee18467"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x01\x02pixels" * 50
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


def settings(feishu: FakeFeishu, **extra: Any) -> dict[str, Any]:
    """Long-connection mode: no verification token, no public URL."""
    return {"feishu_app_id": feishu.app_id, "feishu_app_secret": feishu.app_secret,
            "feishu_api_base": feishu.url, "feishu_locale": "en", **extra}  # fmt: skip


def p2p(feishu: FakeFeishu, text: str = "", **message: Any) -> FeishuMessage:
    chat = feishu.messages.p2p_chat(USER)
    content = message.pop("content", {"text": text})
    return feishu.user_message(chat_id=chat, chat_type="p2p", sender=USER, content=content,
                               **message)  # fmt: skip


async def push(feishu: FakeFeishu, payload: dict[str, Any], *, parts: int = 1) -> dict[str, Any]:
    """One event over the long connection; the client's answer to it."""
    frame_id = await feishu.socket.send_event(payload, parts=parts)
    ack = await feishu.socket.acked(frame_id)
    assert ack.code == 200 and "biz_rt" in ack.headers
    return dict(ack.data or {})


async def answered(running: Running) -> None:
    await running.adapter("feishu").drain()


def buttons(feishu: FakeFeishu, message: FeishuMessage) -> list[dict[str, Any]]:
    entity = feishu.cards[message.card_id]
    return [e for e in entity.card["body"]["elements"] if e.get("tag") == "button"]


async def test_events_arrive_over_the_long_connection_and_are_acknowledged(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    callbacks = FeishuCallbacks(encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        assert await push(feishu, callbacks.message_received(p2p(feishu, "first"))) == {}
        # A large event comes in several frames; the client puts them together.
        await push(feishu, callbacks.message_received(p2p(feishu, "second " * 50)), parts=3)
        await answered(running)
        await feishu.socket.drop()  # Feishu's side goes away: the client opens a new one
        await feishu.until(lambda: feishu.socket.opened == 2 and feishu.socket.live == 1)
        await push(feishu, callbacks.message_received(p2p(feishu, "third")))
        await answered(running)
    queries = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert queries == ["first", ("second " * 50).strip(), "third"]
    assert len(feishu.bot_messages()) == 3
    assert feishu.calls_to("ws.endpoint")[0].body == {
        "AppID": feishu.app_id,
        "AppSecret": feishu.app_secret,
    }


async def test_a_redelivered_event_over_the_connection_is_answered_once(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    callbacks = FeishuCallbacks(encrypt_key=None)
    event = callbacks.message_received(p2p(feishu, "once"))
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, event)
        await push(feishu, event)
        await answered(running)
    assert len(dify.requests_to("/chat-messages")) == 1 and len(feishu.bot_messages()) == 1


async def test_feedback_stop_and_suggestion_buttons(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.parameters["suggested_questions_after_answer"] = {"enabled": True}
    callbacks = FeishuCallbacks(encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.message_received(p2p(feishu, "hello")))
        await answered(running)
        (card,) = feishu.bot_messages()
        pressable = buttons(feishu, card)
        elements = feishu.cards[card.card_id].card["body"]["elements"]
        layout = [e["behaviors"][0]["value"]["action"] if e["tag"] == "button" else e["tag"]
                  for e in elements]  # fmt: skip
        assert layout == ["markdown", "feedback", "feedback", "markdown", "ask", "ask", "ask"]
        like = next(b for b in pressable if b["behaviors"][0]["value"].get("rating") == "like")
        ask = next(b for b in pressable if b["behaviors"][0]["value"]["action"] == "ask")

        def press(button: dict[str, Any]) -> dict[str, Any]:
            value = button["behaviors"][0]["value"]
            return callbacks.card_action(value=value, message_id=card.message_id,
                                         chat_id=card.chat_id, operator=Person(USER))  # fmt: skip

        toast = await push(feishu, press(like))
        assert toast["toast"]["type"] == "success"
        rated_id = like["behaviors"][0]["value"]["message_id"]
        (rated,) = await dify.wait_for(f"/messages/{rated_id}/feedbacks")
        assert rated.json["rating"] == "like" and rated.json["user"].endswith(USER)
        await push(feishu, press(ask))
        await answered(running)
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["hello", ask["text"]["content"]]
    # The suggested question continues the same conversation.
    first, second = dify.requests_to("/chat-messages")
    assert second.json["conversation_id"] and second.json["user"] == first.json["user"]


async def test_the_stop_button_stops_the_running_answer(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["partial", *[" more"] * 200], delay=0.05))
    callbacks = FeishuCallbacks(encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.message_received(p2p(feishu, "long one")))
        await feishu.wait_for("cardkit.card_element.content")
        (card,) = feishu.bot_messages()
        (stop,) = buttons(feishu, card)
        value = stop["behaviors"][0]["value"]
        press = callbacks.card_action(value=value, message_id=card.message_id,
                                      chat_id=card.chat_id, operator=Person(USER))  # fmt: skip
        assert "toast" in await push(feishu, press)
        await answered(running)
    assert len(dify.stops) == 1
    text = feishu.text(card.message_id)
    assert text.startswith("partial") and text.count("more") < 200
    assert all(b["behaviors"][0]["value"]["action"] != "stop" for b in buttons(feishu, card))


async def test_an_image_and_a_file_reach_dify_byte_for_byte(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    callbacks = FeishuCallbacks(encrypt_key=None)
    image = p2p(feishu, msg_type="image", content={"image_key": "img_v3_1"},
                attachments={"img_v3_1": Media(PNG, "image/png", kind="image")})  # fmt: skip
    pdf = p2p(feishu, msg_type="file", content={"file_key": "file_v3_1", "file_name": "Q3.pdf"},
              attachments={"file_v3_1": Media(PDF, "application/pdf", "Q3.pdf")})  # fmt: skip
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.message_received(image))
        await push(feishu, callbacks.message_received(pdf))
        await answered(running)
    uploads = sorted(dify.uploads.values(), key=lambda u: u.filename)
    assert [(u.filename, u.mime_type, u.data) for u in uploads] == [
        ("Q3.pdf", "application/pdf", PDF), ("image.png", "image/png", PNG)
    ]  # fmt: skip
    fetched = feishu.calls_to("im.message_resource.get")
    assert sorted(c.query["type"] for c in fetched) == ["file", "image"]
    assert all(c.headers["Authorization"].startswith("Bearer t-") for c in fetched)


async def test_answer_files_are_sent_natively(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.uploads["f-1"] = UploadedFile("chart.png", "image/png", PNG, "dify")
    dify.uploads["f-2"] = UploadedFile("report.pdf", "application/pdf", PDF, "dify")
    url, pdf_url = signed_url(dify.origin, "f-1"), signed_url(dify.origin, "f-2")
    files = [{"type": "image", "transfer_method": "local_file", "related_id": "f-1",
              "filename": "chart.png", "extension": ".png", "mime_type": "image/png",
              "size": len(PNG), "url": url},
             {"type": "document", "transfer_method": "local_file", "related_id": "f-2",
              "filename": "report.pdf", "extension": ".pdf", "mime_type": "application/pdf",
              "size": len(PDF), "url": pdf_url}]  # fmt: skip
    chunks = ["Here: ", f"![chart.png]({url})"]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, files=files))
    callbacks = FeishuCallbacks(encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.message_received(p2p(feishu, "chart please")))
        await answered(running)
    card, picture, document = feishu.bot_messages()
    assert feishu.text(card.message_id).startswith("Here:") and "sign=" not in str(card.content)
    assert feishu.messages.uploads[picture.content["image_key"]].data == PNG
    uploaded = feishu.messages.uploads[document.content["file_key"]]
    assert (uploaded.data, uploaded.file_name) == (PDF, "report.pdf")
    assert feishu.calls_to("im.file.create")[0].body["file_type"] == "pdf"


@pytest.mark.allow_warnings(r"handshake refused: HTTP 400 exceed connection limit")
async def test_a_refused_handshake_is_retried_without_logging_the_ticket(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    feishu.socket.refuse_next_handshake(msg="exceed connection limit")
    callbacks = FeishuCallbacks(encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.message_received(p2p(feishu, "after a refusal")))
        await answered(running)
    assert len(feishu.socket.refused) == 1 and feishu.socket.opened == 1
    assert len(dify.requests_to("/chat-messages")) == 1
    assert "ticket" not in caplog.text and feishu.app_secret not in caplog.text


async def test_a_first_visit_is_greeted_with_the_opening_statement_once(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.parameters["opening_statement"] = "Hi, I answer questions about **refunds**."
    dify.parameters["suggested_questions"] = ["How long do refunds take?", "Who approves them?"]
    callbacks = FeishuCallbacks(encrypt_key=None)
    chat = feishu.messages.p2p_chat(USER)
    entered = {"chat_id": chat, "operator_id": Person(USER).ids(), "last_message_id": "",
               "last_message_create_time": ""}  # fmt: skip
    event_type = "im.chat.access_event.bot_p2p_chat_entered_v1"
    async with difybot(dify, tmp_path / "db", **settings(feishu)) as running:
        await push(feishu, callbacks.envelope(event_type, entered))
        await push(feishu, callbacks.envelope(event_type, entered))  # opened again at once
        await answered(running)
        (greeting,) = feishu.bot_messages()
        assert feishu.text(greeting.message_id).startswith("Hi, I answer questions about")
        ask = next(e for e in greeting.content["body"]["elements"] if e["tag"] == "button")
        value = ask["behaviors"][0]["value"]
        press = callbacks.card_action(value=value, chat_id=chat, message_id=greeting.message_id,
                                      operator=Person(USER))  # fmt: skip
        await push(feishu, press)
        await answered(running)
        visited = {**entered, "last_message_id": greeting.message_id}
        await push(feishu, callbacks.envelope(event_type, visited))  # not a first visit
        await answered(running)
    assert [r.json["query"] for r in dify.requests_to("/chat-messages")] == [
        "How long do refunds take?"
    ]
    assert len(feishu.bot_messages()) == 2  # the greeting and the answer
