"""The delivery scheduler end to end: a final answer overtakes interim edits in a spent budget
(the real app against FakeSlack and FakeDify), and two replicas share one workspace budget
through the database (the second waits when the first spent it), against the fake enforcing
Slack's tiers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.budget import slack_scheduler
from bot.delivery.scheduler import Priority
from storage.budgets import SqlBudgets
from storage.db import create_engine
from storage.units import Database
from tests.fakes.dify import Answer
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import dm
from tests.fakes.slack_tiers import RateTiers


async def test_the_final_answer_overtakes_interim_edits(tmp_path: Path) -> None:
    """chat.update at 3 a minute: a bucket of 2. Interim edits may only take a token while
    one stays for the final, so of twenty chunks' edits one goes, and the final edit goes
    at once after Dify's last chunk instead of waiting behind them."""
    chunks = [f"w{i} " for i in range(20)]
    async with slack_bot(tmp_path, slack_update_budget_per_minute=3) as bot:
        bot.dify.enqueue("/chat-messages", Answer(chunks=chunks, delay=0.02))
        await bot.event(dm("tell me", ts="1700000001.000001"))
        await bot.answered()
        updates = bot.slack.calls_to("chat.update")
        assert len(updates) == 2  # one interim edit, then the final: the rest were skipped
        assert "dify_feedback_like" in str(updates[-1]["blocks"])  # the last is the final
        (message,) = bot.slack.messages.in_channel("D111")
        assert message.body.strip() == "".join(chunks).strip()
        assert bot.slack.methods().count("chat.postMessage") == 1  # edited, not posted anew
        placeholder = next(c for c in bot.slack.calls if c.method == "chat.postMessage")
        final = next(c for c in reversed(bot.slack.calls) if c.method == "chat.update")
        assert final.at - placeholder.at < 2.0  # the answer streams ~0.4 s; no budget wait


async def test_two_replicas_share_one_workspace_budget(db: Database) -> None:
    """Two replicas' schedulers on one database against one FakeSlack enforcing Slack's tiers:
    the first spends the workspace's chat.update bucket with real edits; the second's final
    edit then waits for the shared bucket to refill, and Slack never answers 429."""
    second_db = Database(create_engine(db.engine.url.render_as_string(hide_password=False)))
    try:
        async with FakeSlack(update_limit=10**9, tiers=RateTiers()) as slack:
            client = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
            posted = await client.chat_postMessage(channel="D1", text="placeholder")
            # 45 a minute (the default): a bucket of 22, refilled at 23 a minute (1 in 2.6 s)
            first, second = (
                slack_scheduler(SqlBudgets(d), update_per_minute=45).account("T0001")
                for d in (db, second_db)
            )

            async def edit(text: str) -> object:
                return await client.chat_update(channel="D1", ts=posted["ts"], text=text)

            loop = asyncio.get_running_loop()
            began = loop.time()
            spent = 0
            while await first.now("chat.update", priority=Priority.FINAL):
                await edit(f"first replica's edit {spent}")
                spent += 1
            assert spent == 22
            await second.call("chat.update", lambda: edit("final"), priority=Priority.FINAL)
            # The bucket refills one token 2.6 s after the first take, however long the first
            # replica took to spend it (a loaded machine): the second waited for that refill.
            assert loop.time() - began >= 2.5
            assert slack.limited == [] and len(slack.calls_to("chat.update")) == 23
            (message,) = slack.messages.in_channel("D1")
            assert message.body == "final"
    finally:
        await second_db.close()
