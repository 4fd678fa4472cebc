"""``FeishuReply`` against the fake Feishu: a replica that takes an answer over edits the same
card (even when its clock is behind), long answers continue in more cards, no send shows twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.feishu.api import FeishuAPI, FeishuPacer, TenantToken, build_http
from adapters.feishu.reply import MAX_BYTES, CardKitSwitch, FeishuReply, Labels, Place
from bot.contract import FormView
from bot.models import Answer, ConversationKey, FormAction, FormRequest, Scope
from bot.stores import StoredToken
from tests.fakes.feishu import FakeFeishu

USER = "ou_84aad35d084aa403a838cf73ee18467"
LABELS = Labels("Thinking…", "Stop", "Helpful", "Not helpful", "You could also ask:")


class Tokens:
    """The shared token store, in memory (TokenStore's protocol)."""

    def __init__(self) -> None:
        self.tokens: dict[str, StoredToken] = {}

    async def get(self, name: str) -> StoredToken | None:
        return self.tokens.get(name)

    async def put(self, name: str, token: str, *, expires_at: float) -> None:
        self.tokens[name] = StoredToken(token, expires_at)

    async def discard(self, name: str, token: str) -> None:
        self.tokens.pop(name, None)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def feishu() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu() as fake:
        yield fake


@pytest.fixture
async def api(feishu: FakeFeishu) -> AsyncIterator[FeishuAPI]:
    http = build_http(feishu.url)
    token = TenantToken(http, Tokens(), app_id=feishu.app_id, app_secret=feishu.app_secret)
    yield FeishuAPI(http, token, FeishuPacer())
    await http.aclose()


def reply(api: FeishuAPI, place: Place, saved: list[dict[str, Any]], **extra: Any) -> FeishuReply:
    async def save(state: dict[str, Any]) -> None:
        saved.append(state)

    return FeishuReply(api, place, labels=LABELS, cardkit=CardKitSwitch(True), uuid="om_q1",
                       save=save, **extra)  # fmt: skip


def p2p_place(feishu: FakeFeishu) -> Place:
    key = ConversationKey("feishu", "tenant", Scope.USER, USER)
    return Place(feishu.messages.p2p_chat(USER), "om_q1", False, key)


async def test_a_taker_edits_the_same_card_even_with_a_clock_behind(
    feishu: FakeFeishu, api: FeishuAPI
) -> None:
    place, saved = p2p_place(feishu), []
    clock = Clock(1000.0)
    first = reply(api, place, saved, wall=clock)
    await first.start()
    await first.update("one")
    clock.now = 1003.0  # three seconds of streaming on replica A
    await first.update("one two")
    (state,) = saved
    # Replica B's clock is two seconds behind A's: its sequences would be smaller.
    taker = reply(api, place, [], state=state, wall=Clock(1001.0))
    await taker.start()
    await taker.update("one two three")
    await taker.finish("one two three four", Answer(message_id="m1", dify_user="u"))
    (message,) = feishu.bot_messages()
    entity = feishu.cards[message.card_id]
    assert feishu.text(message.message_id).startswith("one two three four")
    refused = [c for c in feishu.calls_to("cardkit.card_element.content") if c.code == 300317]
    assert len(refused) == 1  # behind once, then past it
    sequences = [sequence for _, sequence in entity.operations]
    assert sequences == sorted(sequences)
    assert len(feishu.calls_to("im.message.create")) == 1


async def test_a_send_retried_with_the_same_uuid_shows_once(
    feishu: FakeFeishu, api: FeishuAPI
) -> None:
    place = p2p_place(feishu)
    await reply(api, place, []).start()
    await reply(api, place, []).start()  # a replica that died before saving what it sent
    assert len(feishu.bot_messages()) == 1


async def test_a_long_answer_continues_in_more_cards(feishu: FakeFeishu, api: FeishuAPI) -> None:
    place = p2p_place(feishu)
    long = "\n\n".join(f"paragraph {n} " + "词" * 2000 for n in range(8))
    answer = reply(api, place, [])
    await answer.start()
    await answer.update(long)
    await answer.finish(long, Answer(message_id="m1", dify_user="u"))
    cards = feishu.bot_messages()
    assert len(cards) >= 2
    shown = "\n\n".join(feishu.text(c.message_id).split("\n👍")[0] for c in cards)
    assert [line for line in shown.split("\n") if line] == [
        line for line in long.split("\n") if line
    ]
    assert all(len(feishu.text(c.message_id).encode()) <= MAX_BYTES + 200 for c in cards)


async def test_a_form_after_no_text_shows_its_title_and_each_form_its_own_card(
    feishu: FakeFeishu, api: FeishuAPI
) -> None:
    place, saved = p2p_place(feishu), []
    answer = reply(api, place, saved)
    await answer.start()
    actions = (FormAction("ok", "OK", "primary"),)
    first = FormRequest("t1", "f1", "human", "Review", "Check it", actions=actions)
    await answer.show_form("", FormView("ref-one-aaaaaaaa", first, "Check it"))
    paused = feishu.text(feishu.bot_messages()[0].message_id)
    # The run resumed in the same card and paused at a second form.
    again = reply(api, place, saved, state=saved[-1])
    second = FormRequest("t2", "f2", "human2", "Sign-off", "Sign it", actions=actions)
    await again.show_form("Checked.", FormView("ref-two-bbbbbbbb", second, "Sign it"))
    card, form_one, form_two = feishu.bot_messages()
    uuids = [m.uuid for m in feishu.bot_messages()]
    assert paused == "Review" and feishu.text(card.message_id) == "Checked."
    assert "Check it" in feishu.text(form_one.message_id)
    assert "Sign it" in feishu.text(form_two.message_id)
    assert len(set(uuids)) == 3 and all(len(u) <= 50 for u in uuids)
