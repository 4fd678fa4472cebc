"""Telegram on the shared delivery scheduler, against FakeTelegram enforcing the flood limits
(one message or edit a second per chat, bursts of 3; 20 a minute per group; 30 a second
overall): the limit table, a final answer overtaking interim edits that were skipped, and two
replicas on one database sharing one chat's budget (the second waits, Telegram never says 429)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from adapters.telegram.api import TelegramApi, TelegramError
from adapters.telegram.keyboard import AnswerMemory
from adapters.telegram.pacer import (
    DRAFT,
    GROUP,
    MESSAGE,
    Skipped,
    TelegramPacer,
    telegram_limits,
)
from adapters.telegram.reply import Place, ReplyKit, TelegramReply
from bot.delivery.scheduler import Priority
from bot.models import Answer
from storage.budgets import SqlBudgets
from storage.db import create_engine
from storage.units import Database
from tests.fakes.telegram import FakeTelegram

BOT = "7012345678"  # the fake token's public part


def test_the_limit_table_stays_under_telegrams_flood_limits() -> None:
    limits = telegram_limits()
    (chat, overall) = limits[MESSAGE]
    assert chat.per_channel and (chat.rate, chat.burst) == (1.0, 1.0)  # a message a second
    # never more than 27 in any second across chats (Telegram: about 30)
    assert not overall.per_channel and overall.burst + overall.rate <= 27
    (group,) = limits[GROUP]
    assert group.per_channel and group.burst + group.rate * 61.0 <= 20.0 + 1e-9  # per 61 s
    (draft,) = limits[DRAFT]
    assert draft.per_channel and draft.rate == 1.0  # drafts: their own lane, not overall
    assert not limits["setWebhook"][0].per_channel


class _NoMemory(AnswerMemory):
    def __init__(self) -> None:
        pass


async def test_a_final_answer_overtakes_the_interim_edits_it_made_skip() -> None:
    """Twenty updates within a second in a group (edits, no drafts): the chat's bucket
    holds one token a second, so the first update posts and the rest are skipped, not
    queued; the final edit goes as soon as the chat's next token is there, not twenty
    seconds later behind queued edits."""
    async with FakeTelegram() as tg:
        chat = tg.inbound.group()
        api = TelegramApi(tg.token, tg.base_url)
        kit = ReplyKit(api=api, pacer=TelegramPacer(bot=BOT), memory=_NoMemory(),
                       text=lambda k, _: k, feedback=False)  # fmt: skip
        reply = TelegramReply(kit, Place(chat.id, group=True), entry_id=1, locale=None)
        await reply.start()
        loop = asyncio.get_running_loop()
        text = ""
        for i in range(20):
            text += f"w{i} "
            await reply.update(text)
        last_update = loop.time()
        await reply.finish(text, Answer())
        finished = loop.time()
        await api.aclose()
    sends, edits = tg.calls_to("sendMessage"), tg.calls_to("editMessageText")
    assert len(sends) == 1 and sends[0].args["text"] == "w0"  # the one interim post
    assert len(edits) == 1  # the final edit: the 19 interim edits were skipped
    (message,) = tg.state.sent_by_bot(chat.id)
    assert message.text == text.strip()
    assert finished - last_update < 1.5  # one token's refill, not 19 queued edits
    assert tg.rate_limited == []


async def test_an_interim_call_refused_now_is_skipped_not_queued() -> None:
    pacer = TelegramPacer(bot=BOT)
    calls: list[str] = []

    async def call() -> None:
        calls.append("sent")

    await pacer.send(5, call, priority=Priority.INTERIM)
    with pytest.raises(Skipped):
        await pacer.send(5, call, priority=Priority.INTERIM)
    assert calls == ["sent"]


async def test_a_429_on_an_interim_call_pauses_the_chat_and_skips_it() -> None:
    pacer = TelegramPacer(bot=BOT)

    async def flooded() -> None:
        raise TelegramError("Too Many Requests: retry after 30", status=429, retry_after=30)

    with pytest.raises(Skipped):
        await pacer.send(5, flooded, priority=Priority.INTERIM)
    assert pacer.refused == 1
    with pytest.raises(Skipped):  # the chat is paused: not even a draft goes now
        await pacer.send(5, flooded, lane=DRAFT, priority=Priority.INTERIM)

    async def elsewhere() -> str:
        return "sent"

    assert await pacer.send(6, elsewhere, priority=Priority.INTERIM) == "sent"  # other chats go


async def test_two_replicas_share_one_chats_budget(db: Database) -> None:
    """Two replicas' pacers on one database (the bot is their shared account) send four
    messages each into one private chat at once. Alone each would send one a second, two a
    second together, past the fake's burst of 3: sharing the chat's bucket, the messages go
    one a second and Telegram refuses none."""
    second_db = Database(create_engine(db.engine.url.render_as_string(hide_password=False)))
    try:
        async with FakeTelegram() as tg:
            chat = tg.inbound.private_chat()
            api = TelegramApi(tg.token, tg.base_url)
            replicas = [TelegramPacer(budgets=SqlBudgets(d), bot=BOT) for d in (db, second_db)]

            async def send(pacer: TelegramPacer, n: int) -> None:
                for i in range(4):
                    params = {"chat_id": chat.id, "text": f"replica {n}, message {i}"}

                    async def call(params: dict[str, object] = params) -> object:
                        return await api.call("sendMessage", params)

                    await pacer.send(chat.id, call)

            await asyncio.gather(*(send(p, n) for n, p in enumerate(replicas)))
            await api.aclose()
        sends = tg.calls_to("sendMessage")
        assert tg.rate_limited == [] and len(sends) == 8 and all(c.ok for c in sends)
        assert {c.args["text"][:9] for c in sends} == {"replica 0", "replica 1"}
        # one a second (a little scheduling jitter on a loaded machine)
        gaps = [b.at - a.at for a, b in itertools.pairwise(sends)]
        assert min(gaps) > 0.8 and sends[-1].at - sends[0].at >= 6.9
    finally:
        await second_db.close()
