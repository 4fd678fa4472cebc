"""The real difybot (core + web server + Slack adapter) wired to FakeDify and FakeSlack."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from slack_sdk.signature import SignatureVerifier

from adapters.slack.adapter import SlackAdapter
from difybot.config import load_settings
from difybot.wiring import Core, build_core, build_platforms, build_web
from tests.fakes.dify import FakeDify
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack

SIGNING_SECRET = "test-signing-secret"


@dataclass
class SlackBot:
    dify: FakeDify
    slack: FakeSlack
    core: Core
    web_url: str

    async def event(self, body: dict[str, Any], *, retry: int = 0) -> dict[str, Any]:
        """Deliver an Events API body over Socket Mode; the ack bolt sent back."""
        envelope = await self.slack.socket.send("events_api", body, retry_attempt=retry)
        return await self.slack.socket.acked(envelope)

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        envelope = await self.slack.socket.send("slash_commands", body)
        return await self.slack.socket.acked(envelope)

    async def click(self, body: dict[str, Any]) -> dict[str, Any]:
        envelope = await self.slack.socket.send("interactive", body)
        return await self.slack.socket.acked(envelope)

    async def http(
        self,
        raw: str,
        *,
        content_type: str = "application/json",
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        """POST /slack/events signed the way Slack signs (v0 HMAC of the raw body)."""
        stamp = str(int(time.time()))
        signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=raw)
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                "X-Slack-Signature": signature, **(headers or {})}  # fmt: skip
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.web_url}/slack/events", data=raw.encode(), headers=sent) as resp,
        ):
            return resp.status, await resp.text()

    async def http_event(self, body: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        return await self.http(json.dumps(body), **kwargs)

    async def http_form(self, fields: dict[str, Any], **kwargs: Any) -> tuple[int, str]:
        return await self.http(
            urlencode(fields), content_type="application/x-www-form-urlencoded", **kwargs
        )

    async def answered(self, count: int = 1) -> None:
        """Until ``count`` answers have been asked of Dify and every answer task has ended."""
        await self.dify.wait_for("/chat-messages", count)
        await self.adapter.answers.drain()

    @property
    def adapter(self) -> SlackAdapter:
        (adapter,) = self.core.adapters
        assert isinstance(adapter, SlackAdapter)
        return adapter


@asynccontextmanager
async def slack_bot(
    tmp_path: Path,
    *,
    socket: bool = True,
    http: bool = False,
    dify: dict[str, Any] | None = None,
    slack: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[SlackBot]:
    async with (
        FakeDify(**(dify or {})) as fake_dify,
        FakeSlack(**(slack or {})) as fake_slack,
        slack_bot_on(fake_dify, fake_slack, tmp_path, socket=socket, http=http, **settings) as bot,
    ):
        yield bot


@asynccontextmanager
async def slack_bot_on(
    fake_dify: FakeDify,
    fake_slack: FakeSlack,
    tmp_path: Path,
    *,
    socket: bool = True,
    http: bool = False,
    **settings: Any,
) -> AsyncIterator[SlackBot]:
    """difybot on fakes the caller keeps (a restart: a second one on the same database)."""
    config = load_settings(
        dify_api_key=fake_dify.api_key,
        dify_api_base=fake_dify.base_url,
        database_url=f"sqlite+aiosqlite:///{tmp_path}/difybot.db",
        slack_bot_token=BOT_TOKEN,
        slack_app_token=APP_TOKEN if socket else None,
        slack_signing_secret=SIGNING_SECRET if http else None,
        slack_api_url=fake_slack.url,
        **{
            "stream_edit_interval": 0.01,
            "slack_update_budget_per_minute": 100_000,
            "shutdown_timeout": 2.0,
            **settings,
        },
    )
    core = await build_core(config)
    app = build_web(core)
    build_platforms(core, app)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for adapter in core.adapters:
            await adapter.start()
        yield SlackBot(fake_dify, fake_slack, core, url)
    finally:
        for adapter in core.adapters:
            await adapter.stop()
        await runner.cleanup()
        await core.close()
