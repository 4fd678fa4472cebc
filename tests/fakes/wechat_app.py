"""The real difybot (``serve`` wiring) on loopback port 0, configured against the fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from difybot.config import load_settings
from difybot.wiring import Core, build_core, build_platforms, build_web
from tests.fakes.dify import FakeDify
from tests.fakes.wechat import FakeWeChatAPI

# WeChat waits 5 s per delivery; tests scale that to TIMEOUT and the reply window with it.
TIMEOUT = 1.2  # with 0.42 s between the window and the hang-up: loop stalls of a long test run
WINDOW = 0.78
TOKEN = "wechat-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
BOT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@dataclass
class Running:
    core: Core
    url: str

    def adapter(self, name: str) -> Any:
        return next(a for a in self.core.adapters if a.name == name)


def wechat_settings(api: FakeWeChatAPI, **extra: Any) -> dict[str, Any]:
    """Official Account settings pointing at the fake API."""
    return {
        "wechat_token": TOKEN, "wechat_app_id": api.app_id, "wechat_app_secret": api.app_secret,
        "wechat_api_base": api.url, "wechat_reply_window": WINDOW, **extra,
    }  # fmt: skip


def wecom_settings(api: FakeWeChatAPI, **extra: Any) -> dict[str, Any]:
    return {
        "wecom_corp_id": api.corp_id, "wecom_agent_id": "1000002", "wecom_secret": api.corp_secret,
        "wecom_token": TOKEN, "wecom_encoding_aes_key": AES_KEY, "wecom_api_base": api.url,
        "wecom_bot_token": "bot-token", "wecom_bot_encoding_aes_key": BOT_AES_KEY, **extra,
    }  # fmt: skip


@asynccontextmanager
async def difybot(dify: FakeDify, database: Path, **settings: Any) -> AsyncIterator[Running]:
    """One replica: core, web app and adapters built as ``difybot serve`` builds them."""
    config = load_settings(
        dify_api_key=dify.api_key,
        dify_api_base=dify.base_url,
        database_url=f"sqlite+aiosqlite:///{database}",
        **{"shutdown_timeout": 0, **settings},
    )
    core = await build_core(config)
    app = build_web(core)
    build_platforms(core, app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        for adapter in core.adapters:  # one failing to start still gets everything closed
            await adapter.start()
        yield Running(core, f"http://127.0.0.1:{runner.addresses[0][1]}")
    finally:
        for adapter in core.adapters:
            await adapter.stop()
        await runner.cleanup()
        await core.close()
