"""Wiring and lifecycle: settings → HTTP client, Dify client, store, dispatcher, web server."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.dify import DifyClient, build_http
from bot.dispatcher import Dispatcher
from bot.errors import ConfigError, DifyAuthError, DifyError
from bot.policy import Allowlist, Gate, RateLimiter
from bot.protocols import Adapter
from bot.texts import Texts
from storage.conversations import ConversationStore
from storage.db import create_engine, ping
from storage.journal import Journal
from storage.migrate import ensure_schema

log = logging.getLogger(__name__)


@dataclass
class Core:
    """Everything a message needs, built once from the settings and closed once."""

    settings: Settings
    http: httpx.AsyncClient
    dify: DifyClient
    engine: AsyncEngine
    store: ConversationStore
    dispatcher: Dispatcher
    adapters: list[Adapter] = field(default_factory=list)

    async def close(self) -> None:
        await self.dispatcher.close(grace=self.settings.shutdown_timeout)
        await self.http.aclose()
        await self.engine.dispose()


async def build_core(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Core:
    """Create the database (and its folder) if needed and learn the Dify app's mode."""
    http = build_http(
        settings.dify_base,
        connect_timeout=settings.dify_connect_timeout,
        read_timeout=settings.dify_read_timeout,
        transport=transport,
    )
    dify = DifyClient(
        http,
        api_key=settings.dify_api_key.get_secret_value(),
        mode=settings.dify_app_mode,
        query_variable=settings.dify_workflow_query_variable,
        max_retries=settings.dify_max_retries,
        first_event_timeout=settings.dify_first_event_timeout,
        auto_generate_name=settings.dify_auto_generate_name,
    )
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    try:
        await ensure_schema(engine, auto_migrate=settings.database_auto_migrate)
        await _learn_mode(dify)
    except BaseException:
        await http.aclose()
        await engine.dispose()
        raise
    store = ConversationStore(engine, idle_expiry=settings.conversation_idle_expiry)
    texts = Texts(settings.bot_locale, settings.bot_texts)
    journal = Journal(engine, lease=settings.journal_lease_seconds)
    dispatcher = Dispatcher(
        dify,
        store,
        texts=texts,
        journal=journal,
        gate=build_gate(settings),
        edit_interval=settings.stream_edit_interval,
    )
    return Core(settings, http, dify, engine, store, dispatcher)


def build_gate(settings: Settings) -> Gate:
    """Allowlists per platform (comma-separated ids, empty = everyone) and the rate limit."""
    lists = {
        "slack": Allowlist(
            workspaces=_ids(settings.slack_allowed_teams),
            channels=_ids(settings.slack_allowed_channels),
            users=_ids(settings.slack_allowed_users),
        ),
        "wechat": Allowlist(users=_ids(settings.wechat_allowed_users)),
        "wecom": Allowlist(users=_ids(settings.wecom_allowed_users)),
        "wecom_bot": Allowlist(users=_ids(settings.wecom_allowed_users)),
    }
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
    return Gate(
        allowlists=lists,
        limiter=limiter if settings.rate_limit_per_minute > 0 else None,
        silent_denials=settings.access_denied_reply == "silent",
    )


def _ids(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


async def _learn_mode(dify: DifyClient) -> None:
    """A rejected key stops startup; an unreachable Dify does not (the mode is read later)."""
    try:
        mode = await dify.detect_mode()
        log.info("Dify app mode: %s", mode)
    except DifyAuthError as exc:
        raise ConfigError(f"DIFY_API_KEY: Dify rejected the key ({exc.status} {exc.code})") from exc
    except DifyError as exc:
        log.warning("Dify not reachable at startup (%s); will retry on first message", exc)


def build_adapters(core: Core, app: web.Application) -> list[Adapter]:
    """Every adapter whose credentials are set; webhook adapters add their routes to ``app``.

    Platform modules are imported only when configured, so a missing optional platform
    dependency never stops the others.
    """
    adapters: list[Adapter] = []
    # Adapters register here, one block per platform (Slack, WeChat, WeCom).
    if core.settings.slack_bot_token is not None:
        from adapters.slack import build_slack

        adapters.append(build_slack(core.settings, core.dispatcher, app))
    if core.settings.wechat_token is not None:
        from adapters.wechat.official import build_official_account

        adapters.append(build_official_account(core, app))
    if core.settings.wecom_token is not None:
        from adapters.wechat.wecom_app import build_wecom_app

        adapters.append(build_wecom_app(core, app))
    if core.settings.wecom_bot_token is not None:
        from adapters.wechat.wecom_bot import build_wecom_bot

        adapters.append(build_wecom_bot(core, app))
    return adapters


def build_web(core: Core) -> web.Application:
    """The one aiohttp server: health endpoints and every webhook adapter's routes."""
    app = web.Application(client_max_size=1024 * 1024)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        checks = {"database": await ping(core.engine), "dify": await _dify_reachable(core.dify)}
        status = 200 if all(checks.values()) else 503
        return web.json_response({"ready": status == 200, **checks}, status=status)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _dify_reachable(dify: DifyClient) -> bool:
    try:
        async with asyncio.timeout(5):
            await dify.info(retry=False)
    except (DifyError, TimeoutError):
        return False
    return True


async def serve(settings: Settings, *, ready: Callable[[int], Any] | None = None) -> None:
    """``difybot serve``: run until SIGTERM/SIGINT, then finish in-flight answers and exit."""
    core = await build_core(settings)
    app = build_web(core)
    core.adapters = build_adapters(core, app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port)
    await site.start()
    for adapter in core.adapters:
        await adapter.start()
    core.dispatcher.start()  # finish messages left by replicas that died (or by our last run)
    port = _bound_port(runner, settings.port)
    names = ", ".join(a.name for a in core.adapters) or "none (set platform credentials)"
    log.info("difybot serving on %s:%d; adapters on: %s", settings.host, port, names)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(port)
    try:
        await stop.wait()
        log.info("shutting down: finishing %d answer(s)", core.dispatcher.in_flight)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        for adapter in core.adapters:
            await adapter.stop()
        await runner.cleanup()
        await core.close()


def _bound_port(runner: web.AppRunner, configured: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return configured
