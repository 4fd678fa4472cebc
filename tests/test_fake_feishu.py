"""The fake Feishu speaks the platform's protocol: lark-oapi, pointed at it, authenticates,
sends, replies in threads, edits cards, streams CardKit cards, uploads and downloads, meets the
rate limits; its webhook dispatcher accepts the callbacks the fake seals and its long-connection
client talks to the fake's endpoint.

lark-oapi's HTTP calls are made through its synchronous API in a worker thread: its async API
fetches the tenant token with blocking ``requests`` on the event loop, which would freeze the
loop this fake serves from (see research-feishu.md).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import lark_oapi as lark
import lark_oapi.ws.client as lark_ws
import pytest
import requests
from aiohttp import ClientSession, WSServerHandshakeError, web
from lark_oapi.api.cardkit.v1 import (
    Card,
    ContentCardElementRequest,
    ContentCardElementRequestBody,
    CreateCardRequest,
    CreateCardRequestBody,
    SettingsCardRequest,
    SettingsCardRequestBody,
    UpdateCardRequest,
    UpdateCardRequestBody,
)
from lark_oapi.api.im.v1 import (
    CreateFileRequest,
    CreateFileRequestBody,
    CreateImageRequest,
    CreateImageRequestBody,
    CreateMessageReactionRequest,
    CreateMessageReactionRequestBody,
    CreateMessageRequest,
    CreateMessageRequestBody,
    DeleteMessageReactionRequest,
    Emoji,
    GetMessageResourceRequest,
    P2ImMessageReceiveV1,
    PatchMessageRequest,
    PatchMessageRequestBody,
    ReplyMessageRequest,
    ReplyMessageRequestBody,
)
from lark_oapi.core.cache import LocalCache
from lark_oapi.core.model import RawRequest
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from lark_oapi.ws.pb.pbbp2_pb2 import Frame as SdkFrame

from tests.conftest import FakeClock
from tests.fakes.feishu import FakeFeishu, FeishuCall
from tests.fakes.feishu_events import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuCallbacks,
    Person,
    decrypt,
    encrypt,
    mention,
)
from tests.fakes.feishu_frames import DATA, Frame, decode, encode
from tests.fakes.feishu_store import Media

PAYLOADS = Path(__file__).parent / "payloads" / "feishu"
LIN = Person("ou_84aad35d084aa403a838cf73ee18467", "Lin", "on_8ed6aa67826108097d9ee143816345")
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
STREAM_CARD = {
    "schema": "2.0",
    "config": {"streaming_mode": True, "summary": {"content": "Thinking…"}},
    "body": {"elements": [{"tag": "markdown", "content": "…", "element_id": "answer"}]},
}


# ---- helpers ---------------------------------------------------------------------------------


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


def sdk(feishu: FakeFeishu, *, timeout: float = 5.0) -> lark.Client:
    # .cache(): lark-oapi keeps tenant tokens in one process-wide cache (TokenManager.cache);
    # a fresh one per test keeps a token of an earlier fake from leaking into this one.
    return (
        lark.Client.builder()
        .app_id(feishu.app_id)
        .app_secret(feishu.app_secret)
        .domain(feishu.url)
        .timeout(timeout)
        .cache(LocalCache())
        .build()
    )


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """A synchronous lark-oapi call in a worker thread, so the loop keeps serving the fake."""
    return await asyncio.to_thread(fn, *args)


def text_content(text: str) -> str:
    return json.dumps({"text": text}, ensure_ascii=False)


async def send_text(
    client: lark.Client, open_id: str, text: str, *, uuid: str | None = None
) -> Any:
    body = CreateMessageRequestBody.builder().receive_id(open_id).msg_type("text")
    body = body.content(text_content(text))
    if uuid is not None:
        body = body.uuid(uuid)
    request = CreateMessageRequest.builder().receive_id_type("open_id").request_body(body.build())
    return await call(client.im.v1.message.create, request.build())


async def reply(
    client: lark.Client, message_id: str, msg_type: str, content: str, *, thread: bool = True
) -> Any:
    body = ReplyMessageRequestBody.builder().msg_type(msg_type).content(content)
    body = body.reply_in_thread(thread).build()
    request = ReplyMessageRequest.builder().message_id(message_id).request_body(body).build()
    return await call(client.im.v1.message.reply, request)


def group_question(feishu: FakeFeishu, text: str = "@_user_1 what is Dify?") -> Any:
    chat_id = feishu.messages.group_chat()
    return feishu.user_message(
        chat_id=chat_id, chat_type="group", sender=LIN.open_id, content={"text": text},
        mentions=[mention()],
    )  # fmt: skip


def load(name: str) -> dict[str, Any]:
    data = json.loads((PAYLOADS / name).read_text())
    assert isinstance(data, dict)
    return data


# ---- tokens and bot info ---------------------------------------------------------------------


async def test_tenant_token_lives_two_hours_and_is_renewed_in_its_last_half_hour() -> None:
    clock = FakeClock()
    async with FakeFeishu(clock=clock) as feishu, httpx.AsyncClient(base_url=feishu.url) as http:

        async def grant() -> dict[str, Any]:
            body = {"app_id": feishu.app_id, "app_secret": feishu.app_secret}
            answer = await http.post("/open-apis/auth/v3/tenant_access_token/internal", json=body)
            return dict(answer.json())

        async def bot_info(token: str) -> httpx.Response:
            headers = {"Authorization": f"Bearer {token}"}
            return await http.get("/open-apis/bot/v3/info", headers=headers)

        first = await grant()
        assert first["code"] == 0 and first["expire"] == 7200
        clock.now += 3600  # an hour in: the same token, with what is left of it
        again = await grant()
        assert again["tenant_access_token"] == first["tenant_access_token"]
        assert again["expire"] == 3600
        clock.now += 1900  # 1700 s left: asking now mints a second token; both work
        second = await grant()
        assert second["tenant_access_token"] != first["tenant_access_token"]
        assert second["expire"] == 7200
        assert (await bot_info(first["tenant_access_token"])).json()["code"] == 0
        clock.now += 1700  # the first one has expired, the second has not
        stale = await bot_info(first["tenant_access_token"])
        assert stale.status_code == 400 and stale.json()["code"] == 99991663
        fresh = await bot_info(second["tenant_access_token"])
        assert fresh.json()["bot"]["open_id"] == feishu.bot_open_id
        missing = await http.get("/open-apis/bot/v3/info")
        assert missing.status_code == 400 and missing.json()["code"] == 99991661
        wrong = await http.post(
            "/open-apis/auth/v3/tenant_access_token/internal",
            json={"app_id": feishu.app_id, "app_secret": "nope"},
        )
        assert wrong.json()["code"] == 10014


async def test_sdk_fetches_caches_and_never_renews_a_refused_token(feishu: FakeFeishu) -> None:
    client = sdk(feishu)
    info = lark.BaseRequest.builder().http_method(lark.HttpMethod.GET)
    info = info.uri("/open-apis/bot/v3/info").token_types({lark.AccessTokenType.TENANT}).build()
    answer = await call(client.request, info)
    assert json.loads(answer.raw.content)["bot"]["open_id"] == feishu.bot_open_id
    await call(client.request, info)
    assert feishu.routes() == ["auth.tenant_access_token", "bot.info", "bot.info"]
    token = feishu.tokens[-1].value
    assert feishu.calls_to("bot.info")[0].headers["Authorization"] == f"Bearer {token}"
    assert answer.get_log_id()  # X-Tt-Logid, what Feishu support asks for

    feishu.expire_tokens()  # e.g. reset in the console: the SDK keeps using its cached token
    refused = await call(client.request, info)
    assert refused.code == 99991663
    assert len(feishu.calls_to("auth.tenant_access_token")) == 1

    sdk(feishu)  # another client's cache replaces the first one's: its token is gone too
    await call(client.request, info)
    assert len(feishu.calls_to("auth.tenant_access_token")) == 2


# ---- messages, threads, cards ----------------------------------------------------------------


async def test_send_reply_in_thread_and_uuid_dedup(feishu: FakeFeishu) -> None:
    client = sdk(feishu)
    sent = await send_text(client, LIN.open_id, "hello", uuid="u-1")
    assert sent.success() and sent.data.message_id.startswith("om_")
    again = await send_text(client, LIN.open_id, "hello", uuid="u-1")
    assert again.data.message_id == sent.data.message_id  # the same uuid sends once
    assert [m.chat_type for m in feishu.bot_messages()] == ["p2p"]
    call_ = feishu.calls_to("im.message.create")[0]
    assert call_.query == {"receive_id_type": "open_id"}
    assert call_.body == {"receive_id": LIN.open_id, "msg_type": "text",
                          "content": '{"text": "hello"}', "uuid": "u-1"}  # fmt: skip

    question = group_question(feishu)
    first = await reply(client, question.message_id, "text", text_content("Dify is…"))
    thread_id = first.data.thread_id
    assert thread_id.startswith("omt_") and first.data.root_id == question.message_id
    follow = feishu.user_message(chat_id=question.chat_id, chat_type="group",
                                 sender=LIN.open_id, content={"text": "and?"},
                                 root_id=question.message_id, thread_id=thread_id)  # fmt: skip
    second = await reply(client, follow.message_id, "text", text_content("…an LLM app platform"))
    assert second.data.thread_id == thread_id
    texts = [feishu.text(m.message_id) for m in feishu.messages.thread(thread_id)]
    assert texts == ["@_user_1 what is Dify?", "Dify is…", "and?", "…an LLM app platform"]

    feishu.messages.not_member.add(question.chat_id)
    gone = await reply(client, question.message_id, "text", text_content("x"))
    assert gone.code == 230002 and gone.raw.status_code == 400
    too_long = await send_text(client, LIN.open_id, "x" * 160_000)
    assert too_long.code == 230025


async def test_patch_updates_a_card_within_five_per_second() -> None:
    clock = FakeClock()  # frozen: every PATCH below lands in the same second
    async with FakeFeishu(clock=clock) as feishu:
        client = sdk(feishu)
        card: dict[str, Any] = {"config": {"update_multi": True},
                                "elements": [{"tag": "markdown", "content": "…"}]}  # fmt: skip
        question = group_question(feishu)
        sent = await reply(client, question.message_id, "interactive", json.dumps(card))
        message_id = sent.data.message_id

        async def patch(text: str) -> Any:
            card["elements"][0]["content"] = text
            return await patch_message(client, message_id, card)

        answers = [await patch("answer " * n) for n in range(1, 7)]
        assert [(a.raw.status_code, a.code) for a in answers] == [(200, 0)] * 5 + [(400, 230020)]
        assert "too frequently" in str(answers[-1].msg)
        assert feishu.text(message_id) == "answer " * 5  # the refused edit changed nothing
        assert len(feishu.messages.messages[message_id].history) == 5
        clock.now += 1.0
        assert (await patch("final")).success() and feishu.text(message_id) == "final"
        text_reply = await reply(client, question.message_id, "text", text_content("plain"))
        refused = await patch_message(client, text_reply.data.message_id, card)
        assert refused.code == 230001  # only cards can be patched


async def patch_message(client: lark.Client, message_id: str, card: dict[str, Any]) -> Any:
    body = PatchMessageRequestBody.builder().content(json.dumps(card)).build()
    request = PatchMessageRequest.builder().message_id(message_id).request_body(body).build()
    return await call(client.im.v1.message.patch, request)


async def create_card(client: lark.Client, card: dict[str, Any]) -> str:
    body = CreateCardRequestBody.builder().type("card_json").data(json.dumps(card)).build()
    answer = await call(
        client.cardkit.v1.card.create, CreateCardRequest.builder().request_body(body).build()
    )
    assert answer.success(), answer.msg
    return str(answer.data.card_id)


async def stream(client: lark.Client, card_id: str, text: str, sequence: int) -> Any:
    body = ContentCardElementRequestBody.builder().content(text).sequence(sequence).build()
    request = ContentCardElementRequest.builder().card_id(card_id).element_id("answer")
    return await call(client.cardkit.v1.card_element.content, request.request_body(body).build())


async def settings(client: lark.Client, card_id: str, config: dict[str, Any], sequence: int) -> Any:
    settings = json.dumps({"config": config})
    body = SettingsCardRequestBody.builder().settings(settings).sequence(sequence).build()
    request = SettingsCardRequest.builder().card_id(card_id).request_body(body).build()
    return await call(client.cardkit.v1.card.settings, request)


async def test_cardkit_streaming_card_grows_then_closes() -> None:
    clock = FakeClock()
    async with FakeFeishu(clock=clock) as feishu:
        client = sdk(feishu)
        card_id = await create_card(client, STREAM_CARD)
        question = group_question(feishu)
        content = json.dumps({"type": "card", "data": {"card_id": card_id}})
        sent = await reply(client, question.message_id, "interactive", content)
        message_id = sent.data.message_id
        assert feishu.text(message_id) == "…"

        assert (await stream(client, card_id, "Dify is", 1)).success()
        clock.now += 0.2
        assert (await stream(client, card_id, "Dify is an LLM app platform.", 2)).success()
        assert feishu.text(message_id) == "Dify is an LLM app platform."
        stale = await stream(client, card_id, "Dify is an LLM", 2)  # an old, late write
        assert (stale.raw.status_code, stale.code) == (400, 300317)
        assert feishu.text(message_id) == "Dify is an LLM app platform."

        closed = await settings(client, card_id, {"streaming_mode": False}, 3)
        assert closed.success() and not feishu.cards[card_id].streaming
        after = await stream(client, card_id, "more", 4)
        assert after.code == 300309
        final = dict(STREAM_CARD, config={"streaming_mode": False})
        final["body"] = {"elements": [{"tag": "markdown", "content": "Final **answer**",
                                       "element_id": "answer"}]}  # fmt: skip
        whole = Card.builder().type("card_json").data(json.dumps(final)).build()
        body = UpdateCardRequestBody.builder().card(whole).sequence(5).build()
        request = UpdateCardRequest.builder().card_id(card_id).request_body(body).build()
        assert (await call(client.cardkit.v1.card.update, request)).success()
        assert feishu.text(message_id) == "Final **answer**"
        ops = feishu.cards[card_id].operations
        assert ops == [("content", 1), ("content", 2), ("settings", 3), ("update", 5)]

        missing = CreateMessageRequestBody.builder().receive_id(LIN.open_id)
        missing = missing.msg_type("interactive").content(
            json.dumps({"type": "card", "data": {"card_id": "404"}})
        )
        request = CreateMessageRequest.builder().receive_id_type("open_id")
        answer = await call(
            client.im.v1.message.create, request.request_body(missing.build()).build()
        )
        assert answer.code == 230099


async def test_form_containers_are_checked_as_feishu_does(feishu: FakeFeishu) -> None:
    client = sdk(feishu)

    async def send(elements: list[dict[str, Any]]) -> Any:
        card = {"schema": "2.0", "body": {"elements": elements}}
        body = CreateMessageRequestBody.builder().receive_id(LIN.open_id)
        body = body.msg_type("interactive").content(json.dumps(card))
        request = CreateMessageRequest.builder().receive_id_type("open_id")
        return await call(client.im.v1.message.create, request.request_body(body.build()).build())

    def button(name: str | None) -> dict[str, Any]:
        named = {"name": name} if name else {}
        return {"tag": "button", "text": {"tag": "plain_text", "content": "OK"},
                "form_action_type": "submit", **named}  # fmt: skip

    def note(name: str | None) -> dict[str, Any]:
        return {"tag": "input", **({"name": name} if name else {})}

    def form(*elements: dict[str, Any]) -> dict[str, Any]:
        return {"tag": "form", "name": "f", "elements": list(elements)}

    assert (await send([form(note("note"), button("ok"))])).success()
    assert (await send([form(note(None), button("ok"))])).code == 230099  # a name is needed
    assert (await send([form(note("x"), button("x"))])).code == 230099  # ... unique
    nested = {"tag": "column_set", "columns": [{"tag": "column", "elements": [form()]}]}
    assert (await send([nested])).code == 230099  # a form only at the root
    assert (await send([button(None)])).success()  # outside a form, no name needed


async def test_streaming_mode_times_out_after_ten_minutes_and_can_reopen() -> None:
    clock = FakeClock()
    async with FakeFeishu(clock=clock) as feishu:
        client = sdk(feishu)
        card_id = await create_card(client, STREAM_CARD)
        assert (await stream(client, card_id, "a", 1)).success()
        clock.now += 600
        assert (await stream(client, card_id, "ab", 2)).code == 200850
        assert (await stream(client, card_id, "abc", 3)).code == 300309
        assert (await settings(client, card_id, {"streaming_mode": True}, 4)).success()
        assert (await stream(client, card_id, "abcd", 5)).success()
        assert feishu.cards[card_id].text() == "abcd"
        assert feishu.cards[card_id].contents == [("answer", "a"), ("answer", "abcd")]
        never = await create_card(client, dict(STREAM_CARD, config={"streaming_mode": False}))
        assert (await stream(client, never, "x", 1)).code == 300309


# ---- files, reactions ------------------------------------------------------------------------


async def test_upload_send_and_download_files(feishu: FakeFeishu) -> None:
    client = sdk(feishu)
    image = CreateImageRequestBody.builder().image_type("message").image(io.BytesIO(PNG)).build()
    uploaded = await call(
        client.im.v1.image.create, CreateImageRequest.builder().request_body(image).build()
    )
    image_key = uploaded.data.image_key
    assert image_key.startswith("img_v3_")
    assert feishu.messages.uploads[image_key].content_type == "image/png"
    sent = await call(
        client.im.v1.message.create,
        CreateMessageRequest.builder().receive_id_type("open_id").request_body(
            CreateMessageRequestBody.builder().receive_id(LIN.open_id).msg_type("image")
            .content(json.dumps({"image_key": image_key})).build()
        ).build(),
    )  # fmt: skip
    assert sent.success()

    pdf = b"%PDF-1.7 answer"
    body = CreateFileRequestBody.builder().file_type("pdf").file_name("报告.pdf")
    body = body.file(io.BytesIO(pdf)).build()
    answer = await call(
        client.im.v1.file.create, CreateFileRequest.builder().request_body(body).build()
    )
    assert feishu.messages.uploads[answer.data.file_key].data == pdf
    assert feishu.calls_to("im.file.create")[0].headers["Content-Type"].startswith("multipart/")

    not_image = CreateImageRequestBody.builder().image_type("message").image(io.BytesIO(b"text"))
    not_image_request = CreateImageRequest.builder().request_body(not_image.build()).build()
    refused = await call(client.im.v1.image.create, not_image_request)
    assert refused.code == 234011
    empty = CreateFileRequestBody.builder().file_type("stream").file_name("x.bin")
    empty_answer = await call(client.im.v1.file.create, CreateFileRequest.builder().request_body(
        empty.file(io.BytesIO(b"")).build()).build())  # fmt: skip
    assert empty_answer.code == 234010

    # A user's attachment, downloaded through the message-resource API.
    user_file = feishu.user_message(
        chat_id=feishu.messages.p2p_chat(LIN.open_id), chat_type="p2p", sender=LIN.open_id,
        msg_type="file", content={"file_key": "file_v3_user", "file_name": "Q3 报告.pdf"},
        attachments={"file_v3_user": Media(b"x" * 200_000, "application/pdf", "Q3 报告.pdf")},
    )  # fmt: skip
    request = GetMessageResourceRequest.builder().message_id(user_file.message_id)
    request = request.file_key("file_v3_user").type("file").build()
    got = await call(client.im.v1.message_resource.get, request)
    assert got.success() and got.file.read() == b"x" * 200_000
    assert got.file_name == "Q3 报告.pdf"
    assert feishu.im.media_sent["file_v3_user"] == 200_000
    wrong_kind = GetMessageResourceRequest.builder().message_id(user_file.message_id)
    wrong = await call(client.im.v1.message_resource.get,
                       wrong_kind.file_key("img_nope").type("image").build())  # fmt: skip
    assert wrong.code == 234003


async def test_reactions_as_a_sign_of_life(feishu: FakeFeishu) -> None:
    client = sdk(feishu)
    question = group_question(feishu)
    emoji = Emoji.builder().emoji_type("Typing").build()
    body = CreateMessageReactionRequestBody.builder().reaction_type(emoji).build()
    request = CreateMessageReactionRequest.builder().message_id(question.message_id)
    added = await call(client.im.v1.message_reaction.create, request.request_body(body).build())
    assert added.success() and added.data.reaction_type.emoji_type == "Typing"
    assert list(feishu.messages.messages[question.message_id].reactions.values()) == ["Typing"]
    remove = DeleteMessageReactionRequest.builder().message_id(question.message_id)
    removed = await call(client.im.v1.message_reaction.delete,
                         remove.reaction_id(added.data.reaction_id).build())  # fmt: skip
    assert removed.success() and not feishu.messages.messages[question.message_id].reactions


# ---- limits and failures ---------------------------------------------------------------------


async def test_gateway_rate_limit_answers_429_with_reset() -> None:
    async with FakeFeishu(api_per_second=2) as feishu:
        client = sdk(feishu)
        answers = [await send_text(client, LIN.open_id, f"n{n}") for n in range(3)]
        assert [a.code for a in answers] == [0, 0, 99991400]
        limited = answers[-1].raw
        assert limited.status_code == 429
        assert limited.headers["x-ogw-ratelimit-limit"] == "2"
        assert int(limited.headers["x-ogw-ratelimit-reset"]) >= 1
        assert json.loads(limited.content)["msg"] == "request trigger frequency limit"
        assert len(feishu.bot_messages()) == 2  # the refused call sent nothing


async def test_scripted_failures(feishu: FakeFeishu) -> None:
    client = sdk(feishu, timeout=0.3)
    feishu.rate_limit_next("im.message.create", reset=7)
    limited = await send_text(client, LIN.open_id, "a")
    assert (limited.raw.status_code, limited.code) == (429, 99991400)
    assert limited.raw.headers["x-ogw-ratelimit-reset"] == "7"

    feishu.fail_next("im.message.create", code=230002, msg="Bot/User can NOT be out of the chat.")
    assert (await send_text(client, LIN.open_id, "b")).code == 230002

    # A gateway's bare 502 page: lark-oapi's sync API parses every body as JSON, and raises.
    feishu.fail_next("im.message.create", code=None, status=502)
    with pytest.raises(json.JSONDecodeError):
        await send_text(client, LIN.open_id, "c")

    feishu.hang_next("im.message.create")
    with pytest.raises(requests.exceptions.ReadTimeout):  # the client's 0.3 s, not a hang
        await send_text(client, LIN.open_id, "d")
    assert (await send_text(client, LIN.open_id, "e")).success()
    assert [m.content["text"] for m in feishu.bot_messages()] == ["e"]
    statuses = [(c.status, c.code) for c in feishu.calls_to("im.message.create")]
    assert statuses[:3] == [(429, 99991400), (400, 230002), (502, None)]


async def test_wait_for_synchronises_on_answered_calls(feishu: FakeFeishu) -> None:
    client = sdk(feishu)
    pending = asyncio.ensure_future(send_text(client, LIN.open_id, "hi"))
    calls: list[FeishuCall] = await feishu.wait_for("im.message.create")
    assert calls[0].ok and calls[0].body["msg_type"] == "text"
    await pending
    with pytest.raises(TimeoutError, match=r"2x im\.message\.create"):
        await feishu.wait_for("im.message.create", 2, timeout=0.05)


# ---- inbound: callbacks sealed as Feishu does, opened by lark-oapi ---------------------------


def dispatcher(
    received: list[Any], *, encrypt_key: str = ENCRYPT_KEY, token: str = VERIFICATION_TOKEN
) -> lark.EventDispatcherHandler:
    def on_card(event: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        received.append(event)
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": "Thanks!"}})

    return (
        lark.EventDispatcherHandler.builder(encrypt_key, token)
        .register_p2_im_message_receive_v1(received.append)
        .register_p2_card_action_trigger(on_card)
        .build()
    )


def raw_request(body: bytes, headers: dict[str, str]) -> RawRequest:
    request = RawRequest()
    request.uri, request.body, request.headers = "/feishu/events", body, dict(headers)
    return request


def test_sealed_events_open_with_the_sdk_dispatcher(feishu_callbacks: FeishuCallbacks) -> None:
    received: list[Any] = []
    handler = dispatcher(received)
    message = load("event_message_group_mention.json")
    sealed = feishu_callbacks.seal(message)
    assert set(json.loads(sealed.body)) == {"encrypt"}  # nothing readable on the wire
    answer = handler.do(raw_request(sealed.body, sealed.headers))
    assert answer.status_code == 200, answer.content
    event: P2ImMessageReceiveV1 = received[0]
    assert event.header.event_id == message["header"]["event_id"]
    assert event.event.message.mentions[0].key == "@_user_1"
    assert json.loads(event.event.message.content)["text"].startswith("@_user_1 what's")

    challenge = feishu_callbacks.seal(feishu_callbacks.url_verification("c-123"))
    echoed = handler.do(raw_request(challenge.body, challenge.headers))
    assert (echoed.status_code, json.loads(echoed.content)) == (200, {"challenge": "c-123"})

    card = feishu_callbacks.seal(load("card_action_form.json"))
    toast = handler.do(raw_request(card.body, card.headers))
    assert json.loads(toast.content) == {"toast": {"type": "success", "content": "Thanks!"}}
    assert received[-1].event.action.form_value["field_level"] == "high"


@pytest.mark.allow_warnings("^handle event failed")
def test_sdk_answers_500_to_forgeries(feishu_callbacks: FeishuCallbacks) -> None:
    """The SDK's dispatcher reports a forged signature or token as HTTP 500 (and logs it at
    ERROR): difybot must map these to 4xx itself, or check before handing the body over."""
    received: list[Any] = []
    handler = dispatcher(received)
    forged = feishu_callbacks.seal(load("event_message_p2p_text.json"), signature="0" * 64)
    assert handler.do(raw_request(forged.body, forged.headers)).status_code == 500
    tampered = feishu_callbacks.seal(load("event_message_p2p_text.json"))
    body = tampered.body.replace(b'"}', b'x"}')
    assert handler.do(raw_request(body, tampered.headers)).status_code == 500
    stolen = load("event_message_p2p_text.json")
    stolen["header"]["token"] = "a-guessed-token"  # sealed with the right key, wrong token
    impostor = feishu_callbacks.seal(stolen)
    assert handler.do(raw_request(impostor.body, impostor.headers)).status_code == 500
    assert received == []


def test_plaintext_mode_and_every_payload_file_parse_with_sdk_models() -> None:
    """Without an Encrypt Key the bodies are plain JSON; every captured v2 payload fits the
    SDK's typed models (field names and types as the docs give them)."""
    plain = FeishuCallbacks(encrypt_key=None)
    received: list[Any] = []
    handler = dispatcher(received, encrypt_key="")
    names = sorted(
        p.name for p in PAYLOADS.glob("*.json") if p.name.startswith(("event_m", "card"))
    )
    for name in names:
        sealed = plain.seal(load(name))
        assert "X-Lark-Signature" not in sealed.headers
        assert handler.do(raw_request(sealed.body, sealed.headers)).status_code == 200, name
    assert len(received) == len(names) == 14
    messages = [r.event.message for r in received if isinstance(r, P2ImMessageReceiveV1)]
    assert {m.chat_type for m in messages} == {"p2p", "group"}
    assert all(m.message_id.startswith("om_") and json.loads(m.content) for m in messages)
    thread = next(m for m in messages if m.thread_id)
    assert thread.root_id and thread.parent_id and thread.chat_type == "group"
    legacy = load("event_v1_message.json")
    assert "schema" not in legacy and legacy["type"] == "event_callback"  # 1.0: not for new apps


def test_encryption_matches_the_docs_example_and_the_sdk() -> None:
    sample = load("encrypt_sample.json")
    assert decrypt(sample["encrypt_key"], sample["encrypt"]) == b"hello world"
    cipher = lark.AESCipher(sample["encrypt_key"])
    assert cipher.decrypt_str(sample["encrypt"]) == "hello world"
    ours = encrypt("another key", "你好, Feishu".encode())
    assert lark.AESCipher("another key").decrypt_str(ours) == "你好, Feishu"
    assert base64.b64decode(ours)[:16] != base64.b64decode(encrypt("another key", b"x"))[:16]
    sealed = FeishuCallbacks().seal({"a": 1}, timestamp="1700000000", nonce="n0nce")
    expected = hashlib.sha256(b"1700000000n0nce" + ENCRYPT_KEY.encode() + sealed.body)
    assert sealed.headers["X-Lark-Signature"] == expected.hexdigest()


async def test_post_and_redeliver_to_an_app(feishu_callbacks: FeishuCallbacks) -> None:
    bodies: list[tuple[bytes, dict[str, str]]] = []
    slow = asyncio.Event()

    async def app_endpoint(request: web.Request) -> web.Response:
        bodies.append((await request.read(), dict(request.headers)))
        if len(bodies) == 1:
            await slow.wait()  # the app takes too long: Feishu will retry
        return web.json_response({"msg": "success"})

    app = web.Application()
    app.router.add_post("/feishu/events", app_endpoint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feishu/events"
    try:
        payload = load("event_message_p2p_text.json")
        first = await feishu_callbacks.post(url, payload, answer_within=0.1)
        assert first.status is None and first.sealed is not None
        slow.set()
        retry = await feishu_callbacks.redeliver(url, first.sealed)
        assert (retry.status, retry.json) == (200, {"msg": "success"})
        (body1, head1), (body2, head2) = bodies
        assert body1 != body2 and head1["X-Lark-Request-Nonce"] != head2["X-Lark-Request-Nonce"]
        opened = [
            json.loads(feishu_callbacks.decrypt(json.loads(b)["encrypt"])) for b in (body1, body2)
        ]
        assert opened[0]["header"]["event_id"] == opened[1]["header"]["event_id"]
    finally:
        await runner.cleanup()


@pytest.fixture
def feishu_callbacks() -> FeishuCallbacks:
    return FeishuCallbacks()


# ---- the long connection ---------------------------------------------------------------------


class SdkLongConnection:
    """lark-oapi's ws.Client in its own thread and event loop: ``start()`` blocks forever, does
    blocking HTTP, and schedules on the module-level loop it captured at import time."""

    def __init__(self, feishu: FakeFeishu, handler: lark.EventDispatcherHandler) -> None:
        self.client = lark.ws.Client(
            feishu.app_id, feishu.app_secret, event_handler=handler, domain=feishu.url,
            log_level=lark.LogLevel.INFO,
        )  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.stopped: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="lark-ws", daemon=True)

    async def __aenter__(self) -> SdkLongConnection:
        self._thread.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        # Joined off the loop: the SDK's closing handshake needs the fake to answer.
        await asyncio.to_thread(self._thread.join, 5)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        imported = lark_ws.loop  # the SDK's module global, captured when it was imported
        lark_ws.loop = self.loop
        try:
            self.client.start()
        except RuntimeError as stop:  # loop.stop() ends start()'s run_until_complete
            self.stopped = stop
        finally:
            self.client._auto_reconnect = False
            self.loop.run_until_complete(self.client._disconnect())
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()
            lark_ws.loop = imported


@pytest.mark.allow_warnings("^receive message loop exit", "^Task exception was never retrieved")
async def test_long_connection_with_the_sdk_client(
    feishu: FakeFeishu, feishu_callbacks: FeishuCallbacks, caplog: pytest.LogCaptureFixture
) -> None:
    feishu.socket.client_config.update(ReconnectNonce=0, ReconnectInterval=0, PingInterval=120)
    feishu.socket.pong_config = dict(feishu.socket.client_config, PingInterval=90)
    received: list[Any] = []
    handler = dispatcher(received)
    connection = SdkLongConnection(feishu, handler)
    caplog.set_level(logging.INFO, logger="Lark")
    async with connection:
        await feishu.until(lambda: feishu.socket.live == 1, what="the SDK's connection")
        endpoint = feishu.calls_to("ws.endpoint")[0]
        assert endpoint.body == {"AppID": feishu.app_id, "AppSecret": feishu.app_secret}
        await feishu.until(lambda: feishu.socket.connections[0].pings >= 1, what="a ping")

        # An event split over two frames, plaintext as on the wire: the SDK joins and acks it.
        message = load("event_message_p2p_text.json")
        frame_id = await feishu.socket.send_event(message, parts=2)
        ack = await feishu.socket.acked(frame_id)
        assert ack.code == 200 and int(ack.headers["biz_rt"]) >= 0
        assert received[0].header.event_id == message["header"]["event_id"]
        # The pong answering the first ping was handled before the event (tasks run in order).
        assert connection.client._ping_interval == 90

        # A card callback over the connection: its answer travels back in the ack.
        card_id = await feishu.socket.send_event(load("card_action_button.json"))
        card_ack = await feishu.socket.acked(card_id)
        assert card_ack.data == {"toast": {"type": "success", "content": "Thanks!"}}

        # Feishu closes the socket: the SDK asks for a new URL and reconnects.
        await feishu.socket.drop()
        await feishu.until(lambda: feishu.socket.opened == 2 and feishu.socket.live == 1,
                           what="the reconnection")  # fmt: skip
        assert len(feishu.calls_to("ws.endpoint")) == 2
        again = await feishu.socket.send_event(load("event_message_image.json"))
        assert (await feishu.socket.acked(again)).code == 200
        assert received[-1].event.message.message_type == "image"
    # The SDK logs the connection URL, one-time ticket included, at INFO.
    assert any("ticket=" in record.getMessage() for record in caplog.records)


async def test_long_connection_refusals(feishu: FakeFeishu) -> None:
    async with httpx.AsyncClient(base_url=feishu.url) as http:
        wrong = await http.post("/callback/ws/endpoint", json={"AppID": feishu.app_id,
                                                               "AppSecret": "nope"})  # fmt: skip
        assert (wrong.status_code, wrong.json()["code"]) == (200, 10014)
        body = {"AppID": feishu.app_id, "AppSecret": feishu.app_secret}
        url = (await http.post("/callback/ws/endpoint", json=body)).json()["data"]["URL"]
    feishu.socket.refuse_next_handshake()
    async with ClientSession() as session:
        with pytest.raises(WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.headers is not None
        assert refused.value.headers["handshake-status"] == "514"
        assert refused.value.headers["handshake-autherrcode"] == "1000040350"
        with pytest.raises(WSServerHandshakeError):  # a ticket works once
            await session.ws_connect(url)
    assert feishu.socket.opened == 0 and len(feishu.socket.refused) == 2


def test_frames_round_trip_through_the_sdk_protobuf() -> None:
    ours = Frame(DATA, 7, [("type", "event"), ("message_id", "m1")], b'{"a":1}', seq_id=3)
    theirs = SdkFrame()
    theirs.ParseFromString(encode(ours))
    assert (theirs.service, theirs.method, theirs.SeqID, theirs.payload) == (7, 1, 3, b'{"a":1}')
    theirs.headers.add(key="biz_rt", value="4")
    back = decode(theirs.SerializeToString())
    assert back.header("biz_rt") == "4" and back.payload == b'{"a":1}'
    with pytest.raises(ValueError, match="required"):
        decode(b"\x08\x01")
