"""Wiring and lifecycle: settings → HTTP client, Dify client, store, dispatcher, web server."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.answering.inputs import with_inputs
from bot.answering.policy import Allowlist, Gate, RateLimiter
from bot.contract import Adapter
from bot.delivery.inbox import Dispatcher
from bot.dify.client import DifyClient
from bot.errors import AddressInUse, ConfigError
from bot.files.answers import AnswerFiles, FileServices
from bot.files.downloads import GuardedFetch, build_download_http
from bot.files.intake import Intake
from bot.files.types import MB
from bot.ops.metrics import Metrics
from bot.ops.pace import settle_startup_objects
from bot.routing import Routing
from bot.texts import Texts
from difybot.apps import DifyApps, build_apps, prepare_apps, reachable
from difybot.config import Settings, load_routes
from storage.conversations import ConversationStore
from storage.db import create_engine, ping, reach
from storage.journal import Journal
from storage.migrate import ensure_schema
from storage.replicas import Membership, ReplicaRegistry
from storage.threads import FollowedThreads
from storage.units import dispose

if TYPE_CHECKING:
    from difybot.checks import Probe

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
    files: FileServices | None = None
    apps: DifyApps | None = None  # every Dify app by route name (``dify`` is the default)
    metrics: Metrics = field(default_factory=Metrics)

    async def close(self) -> None:
        await self.dispatcher.close(grace=self.settings.shutdown_timeout)
        await (self.apps.aclose() if self.apps is not None else self.http.aclose())
        if self.files is not None:
            await self.files.fetch.aclose()
        await dispose(self.engine)


async def build_core(
    settings: Settings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    routing: Routing | None = None,
    metrics: Metrics | None = None,
    replica: bool = False,
    dify_required: bool = False,
) -> Core:
    """Create the database (and its folder) if needed, learn each Dify app's mode and check
    its inputs. ``routing`` defaults to ROUTES_FILE's table; ``metrics`` to a fresh registry.
    ``replica`` (``difybot serve``): answer as REPLICA_ID, taking back what its last run left.
    ``dify_required`` (the terminal chat): an unreachable Dify stops the start instead of
    being retried later."""
    routing = routing if routing is not None else load_routes(settings)
    metrics = metrics if metrics is not None else Metrics()
    apps = build_apps(settings, routing, metrics=metrics, transport=transport)
    dify = apps.default
    engine = create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )
    journal = Journal(engine, lease=settings.journal_lease_seconds)
    try:
        await reach(engine)
        await ensure_schema(engine, auto_migrate=settings.database_auto_migrate)
        await prepare_apps(apps, routing, required=dify_required)
        membership = await join_replicas(engine, journal, settings.replica_id) if replica else None
    except BaseException:
        await apps.aclose()
        await dispose(engine)
        raise
    store = ConversationStore(engine, idle_expiry=settings.conversation_idle_expiry)
    texts = Texts(settings.bot_locale, settings.bot_texts)
    files = build_files(settings, texts, dify.origin, [c.origin for c in apps.extra.values()])
    dispatcher = Dispatcher(
        dify,
        store,
        texts=texts,
        journal=journal,
        gate=build_gate(settings),
        apps=apps.extra,
        routing=routing,
        metrics=metrics,
        prepare=with_inputs(files.intake.prepare, {n: s.inputs for n, s in routing.apps.items()}),
        membership=membership,
        edit_interval=settings.stream_edit_interval,
    )
    http = apps.pools[settings.dify_base]
    return Core(settings, http, dify, engine, store, dispatcher, files=files, apps=apps,
                metrics=metrics)  # fmt: skip


async def join_replicas(engine: AsyncEngine, journal: Journal, replica_id: str) -> Membership:
    """Answer as ``replica_id`` (once no live process holds it). A replica that restarts under
    its old id gives back what its last run left unfinished, so the sweeper finishes it at once
    rather than when its leases run out."""
    membership = await ReplicaRegistry(engine).join(replica_id)
    if membership.returning and (left := await journal.release_owned(membership.replica_id)):
        log.info("replica %s: %d unfinished answer(s) of its last run taken back",
                 membership.replica_id, left)  # fmt: skip
    return membership


def build_files(
    settings: Settings, texts: Texts, dify_origin: str, other_origins: list[str]
) -> FileServices:
    """Attachments in (the dispatcher's prepare step) and answer files out, on one client.
    Answer files are fetched only from the Dify hosts: every app's API origin and FILES_URL."""
    fetch = GuardedFetch(build_download_http())
    max_bytes = int(settings.files_max_mb * MB)
    intake = Intake(texts, default_query=settings.files_default_query, max_bytes=max_bytes)
    extra = [*other_origins, *([str(settings.dify_files_url)] if settings.dify_files_url else [])]
    answers = AnswerFiles(fetch, base=dify_origin, origins=extra, max_bytes=max_bytes)
    return FileServices(fetch, intake, answers)


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


def build_adapters(
    core: Core, app: web.Application, adapters: list[Adapter] | None = None
) -> list[Adapter]:
    """Every adapter whose credentials are set; webhook adapters add their routes to ``app``.
    Each goes into ``adapters`` as soon as it is built, so a caller can stop those built before
    a later one failed.

    Platform modules are imported only when configured, so a missing optional platform
    dependency never stops the others.
    """
    adapters = adapters if adapters is not None else []
    # Adapters register here, one block per platform (Slack, WeChat, WeCom).
    if core.settings.slack_bot_token is not None:
        from adapters.slack import build_slack

        threads = FollowedThreads(core.engine)
        adapters.append(
            build_slack(core.settings, core.dispatcher, app, files=core.files, threads=threads)
        )
    if core.settings.wechat_token is not None:
        from adapters.wechat.official import build_official_account

        adapters.append(build_official_account(core, app))
    if core.settings.wecom_token is not None:
        from adapters.wecom_app.app import build_wecom_app

        adapters.append(build_wecom_app(core, app))
    if core.settings.wecom_bot_token is not None:
        from adapters.wecom_bot.bot import build_wecom_bot

        adapters.append(build_wecom_bot(core, app))
    return adapters


def build_web(core: Core) -> web.Application:
    """The one aiohttp server: health endpoints and every webhook adapter's routes (which all
    go through one ``WebhookGuard``: header checks, body deadline and cap, concurrency)."""
    from adapters.webhooks import GuardLimits, install

    app = web.Application(client_max_size=1024 * 1024)
    install(app, GuardLimits(deadline=core.settings.webhook_body_timeout))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        clients = core.apps.by_name if core.apps is not None else {"default": core.dify}
        found = await asyncio.gather(ping(core.engine), *map(reachable, clients.values()))
        apps = dict(zip(clients, found[1:], strict=True))
        ready = found[0] and all(apps.values())
        body = {"ready": ready, "database": found[0], "dify": all(apps.values()), "apps": apps}
        return web.json_response(body, status=200 if ready else 503)

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = core.metrics.exposition()
        # aiohttp wants the charset apart from the type ("text/plain; version=0.0.4; ...").
        return web.Response(body=body, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def serve(settings: Settings, *, ready: Callable[[int], Any] | None = None) -> None:
    """``difybot serve``: run until SIGTERM/SIGINT, then finish in-flight answers and exit.

    The listening address is taken first, so a port in use fails at once, before the database
    or Dify is touched; whatever a failed start opened is closed again, in reverse order."""
    listeners = bind(settings.host, settings.port)
    async with contextlib.AsyncExitStack() as opened:
        for listener in listeners:
            opened.callback(listener.close)
        core = await build_core(settings, replica=True)
        opened.push_async_callback(core.close)
        app = build_web(core)
        runner = web.AppRunner(app, access_log=None)
        opened.push_async_callback(_close_front, core.adapters, runner)
        build_adapters(core, app, core.adapters)
        await runner.setup()
        for listener in listeners:
            await web.SockSite(runner, listener).start()
        for adapter in core.adapters:
            await adapter.start()
        core.dispatcher.start()  # finish messages left by replicas that died (or by our last run)
        settle_startup_objects()
        await _serve_until_stopped(core, port=listeners[0].getsockname()[1], ready=ready)


async def _serve_until_stopped(
    core: Core, *, port: int, ready: Callable[[int], Any] | None
) -> None:
    settings = core.settings
    names = ", ".join(a.name for a in core.adapters) or "none (set platform credentials)"
    log.info("difybot serving on %s:%d; adapters on: %s; replica %s",
             settings.host, port, names, core.dispatcher.replica)  # fmt: skip
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


async def _close_front(adapters: list[Adapter], runner: web.AppRunner) -> None:
    """Stop taking messages: the adapters, then the HTTP listener (the core closes after)."""
    for adapter in adapters:
        await adapter.stop()
    if runner.server is not None:
        await runner.cleanup()


def bind(host: str, port: int) -> list[socket.socket]:
    """Listening sockets for HOST:PORT (one per address HOST resolves to, as asyncio would
    open them), or the error that names the setting to change."""
    try:
        found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ConfigError(f"HOST: cannot listen on {host!r}: {exc.strerror}") from None
    listeners: list[socket.socket] = []
    try:
        for family, address in dict.fromkeys((family, addr[0]) for family, *_, addr in found):
            listeners.append(socket.create_server((address, port), family=family))
            port = listeners[0].getsockname()[1]  # PORT=0: the same free port on every address
    except OSError as exc:
        for listener in listeners:
            listener.close()
        raise _to_bind_error(exc, host, port) from None
    return listeners


def _to_bind_error(exc: OSError, host: str, port: int) -> AddressInUse | ConfigError:
    if exc.errno == errno.EADDRINUSE:
        return AddressInUse(
            f"port {port} on {host} is already in use by another program; set PORT to a free "
            f"port (e.g. PORT={port + 1 if port < 65535 else 8080}) or stop the other program"
        )
    if exc.errno == errno.EACCES:
        return AddressInUse(
            f"not allowed to listen on port {port} (ports below 1024 need privileges); "
            "set PORT to 1024 or above"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigError(f"HOST: {host} is not an address of this machine")
    return AddressInUse(f"cannot listen on {host}:{port}: {exc.strerror}")


def platform_probes(settings: Settings) -> list[Probe]:
    """``difybot check``'s probes for each configured platform, imported only when configured,
    like the adapters (this module is where the core meets the platforms)."""
    probes: list[Probe] = []
    if settings.slack_bot_token is not None:
        from adapters.slack.check import check_slack

        probes.append(("Slack", lambda: check_slack(settings)))
    if settings.wechat_token is not None:
        from adapters.tencent.check import check_official_account

        probes.append(("WeChat", lambda: check_official_account(settings)))
    if settings.wecom_token is not None:
        from adapters.tencent.check import check_wecom_app

        probes.append(("WeCom", lambda: check_wecom_app(settings)))
    return probes
