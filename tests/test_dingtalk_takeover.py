"""A DingTalk answer survives its replica: ``difybot serve`` is killed (SIGKILL) while it streams
into an AI card, and, started again under the same REPLICA_ID, it takes the journal entry back and
finishes the answer in the same card (one card, finalized once); without a template, the taker
sends the answer without a second "thinking" message."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fakes.dify import FakeDify
from tests.fakes.dingtalk import TEMPLATE_ID, FakeDingTalk, group_space
from tests.fakes.dingtalk_cards import FINISHED
from tests.fakes.dingtalk_inbound import robot_message, webhook_request
from tests.test_cli_e2e import clean_env
from tests.test_takeover_tencent import SLOW, WHOLE, kill, serving, settled

GROUP = "cidGroupTakeover0001=="


def dingtalk_env(
    tmp_path: Path, dify: FakeDify, fake: FakeDingTalk, **extra: str
) -> dict[str, str]:
    return clean_env(
        tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url,
        DINGTALK_CLIENT_ID=fake.client_id, DINGTALK_CLIENT_SECRET=fake.client_secret,
        DINGTALK_API_BASE=fake.api_url, DINGTALK_OAPI_BASE=fake.oapi_url,
        DINGTALK_EVENT_MODE="webhook", HOST="127.0.0.1", PORT="0", REPLICA_ID="replica-1",
        **extra,
    )  # fmt: skip


async def post(port: int, fake: FakeDingTalk, text: str) -> None:
    headers, body = webhook_request(fake, robot_message(fake, text, group=GROUP))
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/dingtalk", data=body, headers=headers) as response,
    ):
        assert response.status == 200


async def test_an_ai_card_answer_survives_its_replica(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeDingTalk() as fake:
        dify.enqueue("/chat-messages", SLOW, WHOLE)
        env = dingtalk_env(tmp_path, dify, fake, DINGTALK_CARD_TEMPLATE_ID=TEMPLATE_ID)
        async with serving(env, tmp_path) as (first, port):
            await post(port, fake, "a long question")
            await fake.wait_for("/v1.0/card/streaming", 1, timeout=20)  # some text is shown
            await kill(first)
        async with serving(env, tmp_path):
            await fake.until(
                lambda: any(c.flow_status == FINISHED for c in fake.cards.cards.values()), 30
            )
            await settled(env["DATABASE_URL"], 1)
    (card,) = fake.cards.in_space(group_space(GROUP))
    assert card.data["content"] == "the whole answer"
    assert len(fake.calls_to("/v1.0/card/instances/createAndDeliver")) == 1  # the same card
    assert sum(c.json["isFinalize"] for c in fake.calls_to("/v1.0/card/streaming")) == 1
    asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["a long question"] * 2  # the killed run, then the taker's


async def test_a_message_answer_survives_its_replica(tmp_path: Path) -> None:
    async with FakeDify() as dify, FakeDingTalk() as fake:
        dify.enqueue("/chat-messages", SLOW, WHOLE)
        env = dingtalk_env(tmp_path, dify, fake)
        async with serving(env, tmp_path) as (first, port):
            await post(port, fake, "a long question")
            await fake.wait_for("/robot/sendBySession", 1, timeout=20)  # "思考中…"
            await dify.wait_for("/chat-messages", 1, timeout=20)
            await kill(first)
        async with serving(env, tmp_path):
            await fake.wait_for("/robot/sendBySession", 2, timeout=30)
            await settled(env["DATABASE_URL"], 1)
    shown = [m["text"] for m in fake.messages(group_space(GROUP))]
    assert shown == ["思考中…", "the whole answer"]  # no second sign of life, one answer
