"""Several Dify apps behind one Slack workspace: routed by channel and by slash command, each
app with its own key, inputs and language; conversations kept apart per app."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bot.errors import ConfigError
from difybot.config import load_settings
from difybot.wiring import build_core
from tests.fakes.dify import FakeDify
from tests.fakes.dify_wire import load_json
from tests.fakes.slack_api import SlackCall
from tests.fakes.slack_bot import SlackBot, slack_bot
from tests.fakes.slack_payloads import click, command, dm, mention, thread_reply

SALES_KEY = "app-sales-key"
FORM = [
    {"text-input": {"variable": "asker", "label": "Asker", "required": True, "max_length": 64}},
    {"text-input": {"variable": "room", "label": "Room", "required": False, "max_length": 64}},
    {"select": {"variable": "via", "label": "Via", "required": False, "options": ["slack"]}},
]
ROUTES = """\
apps:
  sales:
    api_key_env: SALES_DIFY_KEY
    api_base: {base}
    locale: ja
    inputs:
      {inputs}
routes:
  - {{platform: slack, channel: C0SALES, app: sales}}
  - {{platform: slack, command: /sales, app: sales}}
"""
INPUTS = "{asker: user_id, room: channel, via: platform}"


@pytest.fixture
async def sales(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDify]:
    monkeypatch.setenv("SALES_DIFY_KEY", SALES_KEY)
    parameters = {**load_json("parameters"), "user_input_form": FORM}
    async with FakeDify(api_key=SALES_KEY, parameters=parameters) as fake:
        yield fake


def routes_file(tmp_path: Path, sales: FakeDify, inputs: str = INPUTS) -> str:
    path = tmp_path / "routes.yml"
    path.write_text(ROUTES.format(base=sales.base_url, inputs=inputs), encoding="utf-8")
    return str(path)


async def answered(bot: SlackBot, dify: FakeDify, count: int) -> list[dict[str, Any]]:
    requests = await dify.wait_for("/chat-messages", count)
    await bot.adapter.answers.drain()
    return [request.json for request in requests]


async def test_a_routed_channel_gets_its_app_key_inputs_and_language(
    tmp_path: Path, sales: FakeDify
) -> None:
    async with slack_bot(tmp_path, routes_file=routes_file(tmp_path, sales)) as bot:
        await bot.event(mention("price?", ts="1700000100.000100", channel="C0SALES"))
        (asked,) = await answered(bot, sales, 1)
        await bot.event(dm("hello", ts="1700000101.000101"))
        (plain,) = await answered(bot, bot.dify, 1)
        assert asked["inputs"] == {"asker": "U111", "room": "C0SALES", "via": "slack"}
        assert plain["inputs"] == {}  # the default app maps nothing
        (request,) = sales.requests_to("/chat-messages")
        assert request.headers["authorization"] == f"Bearer {SALES_KEY}"
        status = bot.slack.calls_to("assistant.threads.setStatus")[0]
        assert status["status"] == "考え中…"  # the sales route speaks Japanese
        (answer,) = bot.slack.messages.in_channel("C0SALES", "1700000100.000100")
        assert answer.body == "echo: price?"
        stored = {row.app: row.platform for row in await bot.core.store.list()}
        assert stored == {"sales": "slack", "default": "slack"}


async def test_a_slash_command_routes_its_thread_and_feedback_to_its_app(
    tmp_path: Path, sales: FakeDify
) -> None:
    async with slack_bot(tmp_path, routes_file=routes_file(tmp_path, sales)) as bot:
        body = command("a quote?", channel="C111")
        body["command"] = "/sales"
        await bot.command(body)
        await answered(bot, sales, 1)
        root = bot.slack.messages.in_channel("C111")[0].ts
        follow_up = thread_reply("and shipping?", ts="1700000900.000900", thread_ts=root)
        await bot.event(follow_up)
        first, second = await answered(bot, sales, 2)
        assert second["conversation_id"] and second["user"] == first["user"]
        assert bot.dify.requests_to("/chat-messages") == []  # nothing reached the default app
        answer = bot.slack.messages.in_channel("C111", root)[-1]
        value = next(block for block in answer.blocks if block.get("block_id") == "dify_feedback")
        rating = value["elements"][0]["value"]
        assert rating.endswith("|sales")
        await bot.click(click("dify_feedback_like", rating, channel="C111", message_ts=answer.ts))
        (feedback,) = await sales.wait_for(f"/messages/{rating.split('|')[0]}/feedbacks")
        assert feedback.json["rating"] == "like"


async def test_the_command_that_started_a_thread_is_known_to_every_replica(
    tmp_path: Path, sales: FakeDify
) -> None:
    """A follow-up may reach a replica that never saw the slash command: which command
    started the thread is shared through the database, so it still goes to that app."""
    routes = routes_file(tmp_path, sales)
    async with slack_bot(tmp_path, routes_file=routes) as first:
        body = command("a quote?", channel="C111")
        body["command"] = "/sales"
        await first.command(body)
        await answered(first, sales, 1)
        root = first.slack.messages.in_channel("C111")[0].ts
    async with slack_bot(tmp_path, routes_file=routes) as second:  # a fresh process's memory
        await second.event(thread_reply("and shipping?", ts="1700000900.000900", thread_ts=root))
        asked = await answered(second, sales, 2)
        assert asked[1]["query"] == "and shipping?"
        assert second.dify.requests_to("/chat-messages") == []  # not the default app


async def test_switching_a_channel_to_another_app_starts_a_fresh_conversation(
    tmp_path: Path, sales: FakeDify
) -> None:
    root = "1700000200.000200"
    async with slack_bot(tmp_path) as bot:  # before: C0SALES goes to the default app
        await bot.event(mention("one", ts=root, channel="C0SALES"))
        (first,) = await answered(bot, bot.dify, 1)
        assert "conversation_id" not in first
    async with slack_bot(tmp_path, routes_file=routes_file(tmp_path, sales)) as bot:
        again = mention("two", ts="1700000201.000201", channel="C0SALES", thread_ts=root)
        await bot.event(again)
        (second,) = await answered(bot, sales, 1)
        assert "conversation_id" not in second  # not the other app's id (Dify would 404)
        apps = sorted(row.app for row in await bot.core.store.list())
        assert apps == ["default", "sales"]  # both kept: switching back resumes the old one


@pytest.mark.parametrize(
    ("inputs", "problem"),
    [
        ("{asker: user_id, colour: locale}", "routes.yml:7: app 'sales' has no input variable"),
        ("{room: channel}", "app 'sales' requires input 'asker'"),
    ],
)
async def test_startup_checks_inputs_against_the_apps_form(
    tmp_path: Path, sales: FakeDify, inputs: str, problem: str
) -> None:
    async with FakeDify() as default:
        settings = load_settings(
            dify_api_key=default.api_key,
            dify_api_base=default.base_url,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/difybot.db",
            routes_file=routes_file(tmp_path, sales, inputs),
        )
        with pytest.raises(ConfigError) as raised:
            await build_core(settings)
    assert problem in str(raised.value)
    assert sales.requests_to("/parameters")


async def test_a_rejected_key_of_a_routed_app_names_its_variable(
    tmp_path: Path, sales: FakeDify, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALES_DIFY_KEY", "app-wrong-key")
    async with FakeDify() as default:
        settings = load_settings(
            dify_api_key=default.api_key,
            dify_api_base=default.base_url,
            database_url=f"sqlite+aiosqlite:///{tmp_path}/difybot.db",
            routes_file=routes_file(tmp_path, sales),
        )
        with pytest.raises(ConfigError, match="SALES_DIFY_KEY: Dify rejected the key of app"):
            await build_core(settings)


def users_info(locale: str) -> Any:
    """FakeSlack knows no users.info: answer it the way Slack does (include_locale=true)."""

    def answer(call: SlackCall, response: web.Response) -> None:
        if call.method == "users.info":
            user = {"id": call.args["user"], "name": "ann", "locale": locale,
                    "profile": {"display_name": "Ann", "real_name": "Ann Lee"}}  # fmt: skip
            response.body = json.dumps({"ok": True, "user": user}).encode()

    return answer


async def test_the_askers_slack_locale_and_name_when_looked_up(
    tmp_path: Path, sales: FakeDify
) -> None:
    routes = routes_file(tmp_path, sales, "{asker: user_name}")
    async with slack_bot(tmp_path, routes_file=routes, slack_user_lookup=True) as bot:
        bot.slack.on_call = users_info("zh-CN")
        await bot.event(mention("price?", ts="1700000100.000100", channel="C0SALES"))
        (asked,) = await answered(bot, sales, 1)
        await bot.event(mention("again", ts="1700000100.000200", channel="C0SALES"))
        await answered(bot, sales, 2)
        assert asked["inputs"] == {"asker": "Ann"}
        status = bot.slack.calls_to("assistant.threads.setStatus")[0]
        assert status["status"] == "思考中…"  # the user's own language beats the route's ja
        (lookup,) = bot.slack.calls_to("users.info")  # once per user: cached
        assert lookup["include_locale"] in ("true", "1", True)
