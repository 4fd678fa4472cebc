"""The terminal adapter on a (simulated) TTY: greeting, streamed answers, /new."""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator

from adapters.console.chat import ConsoleChat
from bot.dify.client import DifyClient, build_http
from storage.units import Database
from tests.fakes.core import core_rig
from tests.fakes.dify import FakeDify
from tests.fakes.dify_wire import load_json


async def lines(*typed: str) -> AsyncGenerator[str]:
    for line in typed:
        yield line + "\n"


async def test_a_tty_session_opens_with_the_apps_greeting(db: Database) -> None:
    parameters = {
        **load_json("parameters"),
        "opening_statement": "Hi, I'm the support bot.",
        "suggested_questions": ["Reset my password", "Pricing?"],
    }
    async with FakeDify(parameters=parameters) as dify:
        http = build_http(dify.base_url)
        client = DifyClient(http, api_key=dify.api_key, mode=dify.mode)
        out = io.StringIO()
        async with core_rig(db, client) as core:
            chat = ConsoleChat(core.inbox, out=out, tty=True)
            core.inbox.register(chat.platform())
            await chat.run(lines("hello", "/new", "/quit"))
        await http.aclose()
    screen = out.getvalue()
    assert "Hi, I'm the support bot.\n  • Reset my password\n  • Pricing?\n" in screen
    assert "echo: hello" in screen and "Started a new conversation." in screen
    assert screen.index("support bot") < screen.index("echo: hello")
