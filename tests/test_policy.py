"""Allowlists and the per-user rate limit, alone and in the dispatcher: refusals skip Dify."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.answering.policy import Allowlist, Gate, RateLimiter
from bot.delivery.buckets import MemoryBudgets
from bot.dify.client import DifyClient, build_http
from bot.models import ConversationKey, IncomingMessage, Scope
from bot.texts import Texts
from difybot.config import load_settings
from difybot.wiring import build_core, build_platforms, build_web
from storage.units import Database
from tests.fakes.core import Replies, core_rig
from tests.fakes.dify import FakeDify
from tests.fakes.replies import RecordingReply


def message(
    user: str = "U1",
    *,
    platform: str = "slack",
    team: str = "T1",
    channel: str | None = "C1",
    owner: str | None = None,
) -> IncomingMessage:
    key = ConversationKey(platform, team, Scope.USER, owner or user)
    return IncomingMessage(
        platform, team, owner or user, "hi", key, message_id=f"{user}-1",
        channel_id=channel, author_id=user,
    )  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_allowlist_checks_workspace_channel_and_the_author() -> None:
    allow = Allowlist(
        workspaces=frozenset({"T1"}), channels=frozenset({"C1"}), users=frozenset({"U1"})
    )
    assert allow.allows(message())
    assert not allow.allows(message(team="T2"))
    assert not allow.allows(message(channel="C2"))
    assert not allow.allows(message(channel=None))
    assert not allow.allows(message("U2"))
    # In a shared thread the Dify user is the thread's owner; the allowlist checks the author.
    assert not allow.allows(message("U2", owner="U1"))
    assert Allowlist().allows(message("anyone", team="T9", channel=None))


async def test_rate_limiter_allows_a_burst_then_refills() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=6, burst=3, budgets=MemoryBudgets(clock=clock))
    assert [await limiter.allow("u") for _ in range(4)] == [True, True, True, False]
    assert await limiter.allow("other")  # buckets are per user
    clock.now += 10  # one token per 10 s
    assert await limiter.allow("u") and not await limiter.allow("u")
    clock.now += 600
    assert [await limiter.allow("u") for _ in range(4)] == [True, True, True, False]  # capped
    assert await RateLimiter(per_minute=0, burst=1, budgets=MemoryBudgets()).allow("u")


async def test_each_platforms_allowlist_joins_the_gate(tmp_path: Path, dify: FakeDify) -> None:
    """The rate limit comes from the core's settings, each allowlist from its platform's."""
    settings = load_settings(
        _env_file=None,
        dify_api_key=dify.api_key,
        dify_api_base=dify.base_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/difybot.db",
        slack_bot_token="xoxb-test-token",
        slack_signing_secret="test-signing-secret",
        slack_allowed_channels="C1, C2,",
        wechat_token="wechat-token",
        wechat_app_id="wx0123456789abcdef",
        wechat_allowed_users="oABC",
        rate_limit_per_minute=0,
    )
    core = await build_core(settings)
    try:
        build_platforms(core, build_web(core))
        gate = core.gate
        assert await gate.check(message(channel="C2")) is None
        assert await gate.check(message(channel="C3")) == "denied"
        assert await gate.check(message("oXYZ", platform="wechat", channel=None)) == "denied"
        assert await gate.check(message("oABC", platform="wechat", channel=None)) is None
        assert gate.limiter is None
    finally:
        for adapter in core.adapters:
            await adapter.stop()
        await core.close()


@pytest.mark.parametrize("silent", [False, True])
async def test_refused_messages_never_reach_dify(db: Database, silent: bool) -> None:
    gate = Gate(
        allowlists={"slack": Allowlist(users=frozenset({"U1"}))},
        limiter=RateLimiter(per_minute=1, burst=2, budgets=MemoryBudgets(clock=Clock())),
        silent_denials=silent,
    )
    texts = Texts()
    async with FakeDify() as dify:
        http = build_http(dify.base_url)
        client = DifyClient(http, api_key=dify.api_key, mode=dify.mode)
        async with core_rig(db, client, texts=texts, gate=gate, replies=Replies("slack")) as core:
            stranger = RecordingReply()
            await core.ask(message("U2"), stranger)
            replies = [RecordingReply() for _ in range(3)]
            for n, reply in enumerate(replies):
                await core.ask(replace(message("U1"), message_id=f"m{n}"), reply)
        await http.aclose()
    assert stranger.calls == ([] if silent else [("fail", "|" + texts.get("denied"))])
    assert [r.final[0] for r in replies] == ["finish", "finish", "fail"]
    assert replies[2].final == ("fail", "|" + texts.get("rate_limited"))
    assert len(dify.requests_to("/chat-messages")) == 2
