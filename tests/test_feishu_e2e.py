"""End to end: Feishu webhook mode (encrypted, signed callbacks) against the fake Feishu Open
Platform and fake Dify, through the real ``difybot serve`` wiring."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from pydantic import AnyHttpUrl, SecretStr

from adapters.feishu.check import check_feishu
from adapters.feishu.settings import FeishuSettings
from bot.errors import ConfigError
from difybot.config import load_settings
from difybot.wiring import build_core, build_platforms, build_web
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import (
    ENCRYPT_KEY,
    VERIFICATION_TOKEN,
    FeishuCallbacks,
    Person,
    mention,
)
from tests.fakes.feishu_store import FeishuMessage, text_of
from tests.fakes.wechat_app import Running, difybot

USER = "ou_84aad35d084aa403a838cf73ee18467"
OTHER = "ou_5c6e1b0e9b2b4c2f8a1d3e4f5a6b7c8d"


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


def feishu_settings(feishu: FakeFeishu, **extra: Any) -> dict[str, Any]:
    return {
        "feishu_app_id": feishu.app_id, "feishu_app_secret": feishu.app_secret,
        "feishu_api_base": feishu.url, "feishu_event_mode": "webhook",
        "feishu_verification_token": VERIFICATION_TOKEN, "feishu_encrypt_key": ENCRYPT_KEY,
        "feishu_locale": "en", **extra,
    }  # fmt: skip


def events(running: Running) -> str:
    return f"{running.url}/feishu/events"


def p2p(feishu: FakeFeishu, text: str, sender: str = USER) -> FeishuMessage:
    chat = feishu.messages.p2p_chat(sender)
    return feishu.user_message(chat_id=chat, chat_type="p2p", sender=sender,
                               content={"text": text})  # fmt: skip


async def answered(running: Running) -> None:
    await running.adapter("feishu").drain()


async def test_encrypted_url_verification_echoes_the_challenge(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks, plain = FeishuCallbacks(), FeishuCallbacks(encrypt_key=None)
        delivery = await callbacks.post(events(running), callbacks.url_verification("c-123"))
        # Before the Encrypt Key is saved on Feishu's page, the check comes in plain text.
        unsealed = await plain.post(events(running), plain.url_verification("c-456"))
        event = await plain.post(events(running), plain.message_received(p2p(feishu, "hi")))
    assert delivery.status == 200 and delivery.json == {"challenge": "c-123"}
    assert unsealed.status == 200 and unsealed.json == {"challenge": "c-456"}
    assert event.status == 400 and dify.requests_to("/chat-messages") == []


async def test_p2p_answer_streams_into_a_cardkit_card(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    chunks = ["**Refunds** ", "take ", "five ", "days."]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.3))
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        question = p2p(feishu, "how long do refunds take?")
        delivery = await callbacks.post(events(running), callbacks.message_received(question))
        assert delivery.status == 200
        await answered(running)
    (created,) = feishu.calls_to("cardkit.card.create")
    (sent,) = feishu.calls_to("im.message.create")
    card_id = json.loads(sent.body["content"])["data"]["card_id"]
    entity = feishu.cards[card_id]
    assert json.loads(created.body["data"])["config"]["streaming_mode"] is True
    streamed = [text for _, text in entity.contents]
    assert len(streamed) >= 2 and streamed[-1] == "**Refunds** take five days."
    assert all(b.startswith(a) for a, b in itertools.pairwise(streamed))
    sequences = [sequence for _, sequence in entity.operations]
    assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    assert [op for op, _ in entity.operations][-2:] == ["settings", "update"]
    assert entity.streaming is False
    (bot_message,) = feishu.bot_messages()
    assert feishu.text(bot_message.message_id).startswith("**Refunds** take five days.")
    assert dify.requests_to("/chat-messages")[0].json["query"] == "how long do refunds take?"


@pytest.mark.allow_warnings(r"CardKit refused")
async def test_refused_cardkit_falls_back_to_a_patched_card(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["one ", "two ", "three"], delay=0.6))
    feishu.fail_next("cardkit.card.create", code=99991672, msg="Access denied: cardkit:card")
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "count")))
        await answered(running)
    (message,) = feishu.bot_messages()
    assert message.msg_type == "interactive" and not message.card_id
    patches = feishu.calls_to("im.message.patch")
    assert len(patches) >= 2 and all(call.ok for call in patches)
    assert feishu.text(message.message_id).startswith("one two three")
    assert any("one" in text_of(h) and "three" not in text_of(h) for h in message.history)


async def test_group_mention_answers_in_a_thread_and_follows_it(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    group = feishu.messages.group_chat()
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        asked = feishu.user_message(chat_id=group, chat_type="group", sender=USER,
                                    content={"text": "@_user_1 refund policy?"},
                                    mentions=[mention()])  # fmt: skip
        await callbacks.post(events(running), callbacks.message_received(asked))
        await answered(running)
        (reply,) = feishu.calls_to("im.message.reply")
        assert reply.body["reply_in_thread"] is True and asked.message_id in reply.path
        thread = asked.thread_id
        assert thread.startswith("omt_")
        follow = feishu.user_message(chat_id=group, chat_type="group", sender=USER,
                                     content={"text": "and monthly?"}, root_id=asked.message_id,
                                     thread_id=thread)  # fmt: skip
        chatter = feishu.user_message(chat_id=group, chat_type="group", sender=OTHER,
                                      content={"text": "lunch at 12?"})  # fmt: skip
        await callbacks.post(events(running), callbacks.message_received(chatter))
        await callbacks.post(events(running), callbacks.message_received(follow))
        await answered(running)
    queries = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert queries == ["refund policy?", "and monthly?"]
    users = {r.json["conversation_id"] for r in dify.requests_to("/chat-messages")[1:]}
    assert users != {""}  # the follow-up continues the thread's conversation
    assert all(m.thread_id == thread for m in feishu.bot_messages(group))
    assert len(feishu.bot_messages(group)) == 2


async def test_a_mention_of_someone_else_is_ignored(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    group = feishu.messages.group_chat()
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        other = mention(Person(OTHER, "Wang"))
        asked = feishu.user_message(
            chat_id=group, chat_type="group", sender=USER,
            content={"text": "@_user_1 review?"}, mentions=[other],
        )  # fmt: skip
        delivery = await callbacks.post(events(running), callbacks.message_received(asked))
        await answered(running)
    assert delivery.status == 200
    assert dify.requests_to("/chat-messages") == [] and feishu.bot_messages() == []


@pytest.mark.parametrize(
    ("seal", "status"),
    [({"signature": "0" * 64}, 401), ({"timestamp": "1000000000"}, 401)],
)
async def test_forged_or_stale_signatures_are_refused(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path, seal: dict[str, str], status: int
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        payload = callbacks.message_received(p2p(feishu, "hi"))
        delivery = await callbacks.post(events(running), payload, **seal)
    assert delivery.status == status
    assert dify.requests_to("/chat-messages") == [] and feishu.bot_messages() == []


async def test_a_wrong_verification_token_is_refused(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        forger = FeishuCallbacks(verification_token="not-the-token")
        message = forger.message_received(p2p(feishu, "hi"))
        refused = await forger.post(events(running), message)
        challenge = await forger.post(events(running), forger.url_verification())
    assert refused.status == 403 and challenge.status == 403
    assert dify.requests_to("/chat-messages") == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"encrypt": "@@@"}', b'{"encrypt": "AAAA"}']
)
async def test_malformed_bodies_get_400(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path, body: bytes
) -> None:
    async with (
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running,
        aiohttp.ClientSession() as session,
        session.post(events(running), data=body) as response,
    ):
        assert response.status == 400


async def test_a_redelivered_event_is_answered_once(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        first = await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "hi")))
        assert first.sealed is not None
        again = await callbacks.redeliver(events(running), first.sealed)
        await answered(running)
    assert first.status == again.status == 200
    assert len(dify.requests_to("/chat-messages")) == 1
    assert len(feishu.bot_messages()) == 1


async def test_the_card_appears_within_a_second(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["slow"], first_delay=2.0))
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        asked_at = feishu.clock()
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "hi")))
        (sent,) = await feishu.wait_for("im.message.create")
        assert sent.at - asked_at < 1.0
        await answered(running)


async def test_rate_limits_and_an_expired_token_are_waited_out(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        feishu.rate_limit_next("im.message.create", reset=1)
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "one")))
        await answered(running)
        limited, sent = feishu.calls_to("im.message.create")
        assert limited.status == 429 and sent.ok and sent.at - limited.at >= 0.9
        feishu.expire_tokens()
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "two")))
        await answered(running)
    assert len(feishu.calls_to("auth.tenant_access_token")) == 2
    assert len(feishu.bot_messages()) == 2
    assert all(feishu.text(m.message_id).startswith("echo") for m in feishu.bot_messages())


async def test_streaming_is_reopened_when_feishu_closes_it(dify: FakeDify, tmp_path: Path) -> None:
    chunks = ["a ", "b ", "c ", "d ", "e"]
    dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.4))
    async with FakeFeishu(streaming_timeout=0.5) as feishu:
        async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
            callbacks = FeishuCallbacks()
            await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "x")))
            await answered(running)
        writes = feishu.calls_to("cardkit.card_element.content")
        (message,) = feishu.bot_messages()
        entity = feishu.cards[message.card_id]
        shown = feishu.text(message.message_id)
    timed_out = next(n for n, call in enumerate(writes) if call.code == 200850)
    retried = writes[timed_out + 1]
    assert retried.ok and retried.body["content"] == writes[timed_out].body["content"]
    assert [op for op, _ in entity.operations].count("settings") >= 2  # reopened, then closed
    assert shown.split("\n")[0] == "a b c d e"


async def test_check_verifies_the_credentials_and_the_bot(feishu: FakeFeishu) -> None:
    def config(secret: str) -> FeishuSettings:
        return FeishuSettings(feishu_app_id=feishu.app_id, feishu_app_secret=SecretStr(secret),
                              feishu_api_base=AnyHttpUrl(feishu.url))  # fmt: skip

    app, bot = await check_feishu(config(feishu.app_secret))
    assert app.ok and bot.ok and feishu.bot_open_id in bot.detail
    (refused,) = await check_feishu(config("wrong"))
    assert not refused.ok and "10014" in refused.detail and "FEISHU_APP_SECRET" in refused.fix
    feishu.activate_status = 0  # published, not yet enabled by the tenant's admin
    _, disabled = await check_feishu(config(feishu.app_secret))
    assert not disabled.ok and disabled.fix


async def test_a_redelivery_to_another_replica_is_answered_once(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    dify.enqueue("/chat-messages", Answer(chunks=["only ", "once"], delay=0.2))
    async with (
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as a,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as b,
    ):
        callbacks = FeishuCallbacks()
        first = await callbacks.post(events(a), callbacks.message_received(p2p(feishu, "hi")))
        assert first.sealed is not None
        again = await callbacks.redeliver(events(b), first.sealed)
        await answered(a)
        await answered(b)
    assert first.status == again.status == 200
    assert len(dify.requests_to("/chat-messages")) == 1 and len(feishu.bot_messages()) == 1


async def test_plain_callbacks_without_an_encrypt_key(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    plain = feishu_settings(feishu, feishu_encrypt_key=None)
    async with difybot(dify, tmp_path / "db", **plain) as running:
        callbacks = FeishuCallbacks(encrypt_key=None)
        challenge = await callbacks.post(events(running), callbacks.url_verification("c-9"))
        delivery = await callbacks.post(
            events(running), callbacks.message_received(p2p(feishu, "hi"))
        )
        sealed = await FeishuCallbacks().post(events(running), callbacks.url_verification())
        await answered(running)
    assert challenge.json == {"challenge": "c-9"} and delivery.status == 200
    assert sealed.status == 400  # encrypted, but no Encrypt Key to open it with
    assert len(feishu.bot_messages()) == 1


async def test_a_cardkit_outage_costs_only_that_answer_its_stream(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    feishu.fail_next("cardkit.card.create", code=None, status=503, times=3)  # every retry
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "one")))
        await answered(running)
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "two")))
        await answered(running)
    first, second = feishu.bot_messages()
    assert not first.card_id and feishu.calls_to("im.message.patch")
    assert second.card_id and feishu.text(second.message_id).startswith("echo")


def test_webhook_mode_needs_the_verification_token(dify: FakeDify, feishu: FakeFeishu) -> None:
    settings = feishu_settings(feishu, feishu_verification_token=None)
    with pytest.raises(ConfigError, match="FEISHU_VERIFICATION_TOKEN"):
        load_settings(dify_api_key=dify.api_key, **settings)
    settings["feishu_event_mode"] = "websocket"  # the long connection needs no token
    assert load_settings(dify_api_key=dify.api_key, **settings)


async def test_a_button_press_by_webhook_gets_its_toast_once(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
        callbacks = FeishuCallbacks()
        await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "hi")))
        await answered(running)
        (card,) = feishu.bot_messages()
        elements = feishu.cards[card.card_id].card["body"]["elements"]
        values = [e["behaviors"][0]["value"] for e in elements if e["tag"] == "button"]
        dislike = next(v for v in values if v.get("rating") == "dislike")
        press = callbacks.card_action(value=dislike, message_id=card.message_id,
                                      chat_id=card.chat_id, operator=Person(USER))  # fmt: skip
        first = await callbacks.post(events(running), press)
        assert first.sealed is not None
        again = await callbacks.redeliver(events(running), first.sealed)
        await answered(running)
    assert first.json == {"toast": {"type": "success", "content": "Thanks for the feedback!"}}
    assert again.status == 200 and again.json == {}
    (rated,) = dify.requests_to(f"/messages/{dislike['message_id']}/feedbacks")
    assert rated.json["rating"] == "dislike"


async def test_a_tool_step_shows_until_the_answer_begins(
    feishu: FakeFeishu, tmp_path: Path
) -> None:
    async with FakeDify(mode="agent-chat") as dify:
        thoughts = [{"tool": "web_search", "tool_input": "{}"}]
        dify.enqueue("/chat-messages", Answer(chunks=["Found ", "it"], delay=0.3,
                                              agent_thoughts=thoughts))  # fmt: skip
        async with difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as running:
            callbacks = FeishuCallbacks()
            await callbacks.post(events(running), callbacks.message_received(p2p(feishu, "q")))
            await answered(running)
    (message,) = feishu.bot_messages()
    streamed = [text for _, text in feishu.cards[message.card_id].contents]
    assert streamed[0] == "🔧 web_search…"
    assert streamed[-1] == "Found it" and not any("web" in text for text in streamed[1:])
    assert feishu.text(message.message_id).startswith("Found it")


async def test_an_answer_in_flight_is_finished_when_the_replica_stops(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    """SIGTERM's order (difybot serve): the adapters stop, then the core finishes the answers
    in flight within SHUTDOWN_TIMEOUT; the Feishu client must outlive the adapter's stop."""
    dify.enqueue("/chat-messages", Answer(chunks=["still ", "being ", "written"], delay=0.3))
    config = load_settings(dify_api_key=dify.api_key, dify_api_base=dify.base_url,
                           database_url=f"sqlite+aiosqlite:///{tmp_path / 'db'}",
                           shutdown_timeout=10, **feishu_settings(feishu))  # fmt: skip
    core = await build_core(config)
    app = build_web(core)
    build_platforms(core, app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/feishu/events"
    for adapter in core.adapters:
        await adapter.start()
    callbacks = FeishuCallbacks()
    await callbacks.post(url, callbacks.message_received(p2p(feishu, "slow one")))
    await feishu.wait_for("cardkit.card_element.content")
    for adapter in core.adapters:
        await adapter.stop()
    await runner.cleanup()
    await core.close()
    (message,) = feishu.bot_messages()
    assert feishu.text(message.message_id).startswith("still being written")
    assert feishu.cards[message.card_id].streaming is False


async def test_a_thread_followed_on_one_replica_is_answered_on_another(
    dify: FakeDify, feishu: FakeFeishu, tmp_path: Path
) -> None:
    group = feishu.messages.group_chat()
    async with (
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as a,
        difybot(dify, tmp_path / "db", **feishu_settings(feishu)) as b,
    ):
        callbacks = FeishuCallbacks()
        asked = feishu.user_message(
            chat_id=group, chat_type="group", sender=USER, content={"text": "@_user_1 first"},
            mentions=[mention()],
        )  # fmt: skip
        await callbacks.post(events(a), callbacks.message_received(asked))
        await answered(a)
        follow = feishu.user_message(chat_id=group, chat_type="group", sender=OTHER,
                                     content={"text": "second"}, root_id=asked.message_id,
                                     thread_id=asked.thread_id)  # fmt: skip
        await callbacks.post(events(b), callbacks.message_received(follow))
        await answered(a)
        await answered(b)
    first, second = dify.requests_to("/chat-messages")  # no retry: the conversation was found
    assert second.json["query"] == "second" and second.json["conversation_id"]
    assert second.json["user"] == first.json["user"]  # the thread's owner, whoever writes
    assert len(feishu.bot_messages(group)) == 2
