"""Wiring: settings → database and stores, Dify apps, the core (answerer, inbox), the platforms.

    Settings ─► Database ─► ConversationStore, Journal, TokenStore, ...   (storage/)
             ─► DifyApps ─► Answerer ─► JournalInbox                      (bot/)
             ─► every configured PlatformSpec.build(settings, Services)   (adapters/)
                     └─► Platform registered with the inbox (its replies, files, allowlist)

This is the only place where the core, the platforms and storage meet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from aiohttp import web

from adapters.spec import Services
from adapters.webhooks import GuardLimits, install
from bot.answering.answerer import Answerer
from bot.answering.forms import FormDesk, FormPolicy
from bot.answering.inputs import with_inputs
from bot.answering.policy import Gate, RateLimiter
from bot.contract import Adapter, Platform
from bot.delivery.buckets import MemoryBudgets
from bot.delivery.inbox import JournalInbox
from bot.dify.apps import DifyApps
from bot.files.answers import AnswerFiles, FileServices
from bot.files.downloads import GuardedFetch, build_download_http
from bot.files.intake import Intake
from bot.files.types import MB
from bot.ops.metrics import Metrics
from bot.ops.pace import LoadGauge
from bot.routing import Routing
from bot.stores import Budgets
from bot.texts import Texts
from difybot.apps import build_apps, prepare_apps, reachable
from difybot.config import CoreSettings, load_routes
from difybot.platforms import PLATFORMS
from storage.budgets import SqlBudgets
from storage.callbacks import SeenCallbacks
from storage.conversations import ConversationStore
from storage.db import create_engine, ping, reach
from storage.forms import FormStore
from storage.journal import Journal
from storage.migrate import ensure_schema
from storage.replicas import Membership, ReplicaRegistry
from storage.threads import FollowedThreads
from storage.tokens import TokenStore
from storage.units import Database

log = logging.getLogger(__name__)


@dataclass
class Core:
    """Everything a message needs, built once from the settings and closed once."""

    settings: CoreSettings
    db: Database
    apps: DifyApps
    store: ConversationStore
    journal: Journal
    inbox: JournalInbox
    files: FileServices
    gate: Gate
    metrics: Metrics
    budgets: Budgets = field(default_factory=MemoryBudgets)  # rate limits shared by replicas
    budgets_db: Database | None = None  # their own small pool (PostgreSQL)
    platforms: list[Platform] = field(default_factory=list)

    @property
    def adapters(self) -> list[Adapter]:
        return [platform.adapter for platform in self.platforms]

    def platform(self, name: str) -> Platform:
        return next(platform for platform in self.platforms if platform.name == name)

    async def close(self) -> None:
        """After the adapters stopped taking messages: finish the answers in flight (or leave
        them to another replica), then close what they used, the platforms' clients included."""
        await self.inbox.close(grace=self.settings.shutdown_timeout)
        for adapter in self.adapters:
            await adapter.close()
        await self.apps.aclose()
        await self.files.fetch.aclose()
        if self.budgets_db is not None:
            await self.budgets_db.close()
        await self.db.close()


async def build_core(
    settings: CoreSettings,
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
    db = Database(
        create_engine(
            settings.database_url,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
    )
    journal = Journal(db, lease=settings.journal_lease_seconds)
    try:
        await reach(db.engine)
        await ensure_schema(db.engine, auto_migrate=settings.database_auto_migrate)
        await prepare_apps(apps, routing, required=dify_required)
        membership = await join_replicas(db, journal, settings.replica_id) if replica else None
    except BaseException:
        await apps.aclose()
        await db.close()
        raise
    store = ConversationStore(db, idle_expiry=settings.conversation_idle_expiry)
    texts = Texts(settings.bot_locale, settings.bot_texts, tables=[p.texts for p in PLATFORMS])
    files = build_files(settings, texts, apps)
    budgets_db = budgets_database(settings, db)
    budgets = SqlBudgets(budgets_db) if budgets_db is not None else MemoryBudgets()
    gate = build_gate(settings, budgets)
    load = LoadGauge()
    policy = FormPolicy(
        anyone=settings.forms_anyone_may_answer,
        approvers={name: spec.approvers for name, spec in routing.apps.items()},
    )
    forms = FormDesk(FormStore(db), journal, texts=texts, policy=policy)
    answerer = Answerer(
        apps,
        store,
        texts=texts,
        metrics=metrics,
        gate=gate,
        prepare=with_inputs(files.intake.prepare, {n: s.inputs for n, s in routing.apps.items()}),
        edit_interval=settings.stream_edit_interval,
        load=load,
        forms=forms,
        show_reasoning=settings.show_reasoning,
    )
    inbox = JournalInbox(
        journal, answerer, texts=texts, metrics=metrics, routing=routing, load=load,
        membership=membership,
    )  # fmt: skip
    return Core(
        settings, db, apps, store, journal, inbox, files, gate, metrics, budgets, budgets_db
    )


async def join_replicas(db: Database, journal: Journal, replica_id: str) -> Membership:
    """Answer as ``replica_id`` (once no live process holds it). A replica that restarts under
    its old id gives back what its last run left unfinished, so the sweeper finishes it at once
    rather than when its leases run out."""
    membership = await ReplicaRegistry(db).join(replica_id)
    if membership.returning and (left := await journal.release_owned(membership.replica_id)):
        log.info("replica %s: %d unfinished answer(s) of its last run taken back",
                 membership.replica_id, left)  # fmt: skip
    return membership


def build_files(settings: CoreSettings, texts: Texts, apps: DifyApps) -> FileServices:
    """Attachments in (the answerer's prepare step) and answer files out, on one client.
    Answer files are fetched only from the Dify hosts: every app's API origin and FILES_URL."""
    fetch = GuardedFetch(build_download_http())
    max_bytes = int(settings.files_max_mb * MB)
    intake = Intake(texts, default_query=settings.files_default_query, max_bytes=max_bytes)
    origins = [client.origin for client in apps.extra.values()]
    if settings.dify_files_url:
        origins.append(str(settings.dify_files_url))
    answers = AnswerFiles(fetch, base=apps.default.origin, origins=origins, max_bytes=max_bytes)
    return FileServices(fetch, intake, answers)


def build_gate(settings: CoreSettings, budgets: Budgets) -> Gate:
    """The per-user rate limit (shared by replicas on PostgreSQL); each platform's allowlist
    joins when the platform is built."""
    limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst, budgets)
    return Gate(
        limiter=limiter if settings.rate_limit_per_minute > 0 else None,
        silent_denials=settings.access_denied_reply == "silent",
    )


def build_platforms(
    core: Core, app: web.Application, built: list[Platform] | None = None
) -> list[Platform]:
    """Every platform whose credentials are set, built and registered; webhook routes go on
    ``app``. Each goes into ``built`` as soon as it is registered, so a caller can stop those
    built before a later one failed. A platform's modules are imported only when it is
    configured, so one platform's missing dependency never stops the others."""
    built = built if built is not None else core.platforms
    services = build_services(core, app)
    for spec in PLATFORMS:
        if spec.enabled(core.settings):
            register(core, spec.build(core.settings, services), built)
    return built


def register(core: Core, platform: Platform, built: list[Platform] | None = None) -> None:
    """One platform joins the core: its replies (the inbox), its attachments (the intake),
    who may use it (the gate)."""
    core.inbox.register(platform)
    if platform.files is not None:
        core.files.intake.sources[platform.name] = platform.files
    if platform.allowlist is not None:
        core.gate.allowlists[platform.name] = platform.allowlist
    (built if built is not None else core.platforms).append(platform)


def build_services(core: Core, app: web.Application) -> Services:
    return Services(
        inbox=core.inbox,
        web=app,
        tokens=TokenStore(core.db),
        threads=FollowedThreads(core.db),
        callbacks=SeenCallbacks(core.db),
        states=core.journal,
        fetch=core.files.fetch,
        answer_files=core.files.answers,
        metrics=core.metrics,
        conversation_scope=core.settings.conversation_scope,
        budgets=core.budgets,
    )


def budgets_database(settings: CoreSettings, db: Database) -> Database | None:
    """Delivery budgets live in the database replicas share (PostgreSQL), on a small pool of
    their own: a take sits on the path of every rate-limited platform call, and a burst of them
    must never keep the journal's lease renewals waiting for a connection. One process on
    SQLite keeps them in memory (None): nothing to share, no write lock per platform call."""
    if db.engine.dialect.name != "postgresql":
        return None
    return Database(create_engine(settings.database_url, pool_size=3, max_overflow=2))


def build_web(core: Core) -> web.Application:
    """The one aiohttp server: health endpoints and every webhook adapter's routes (which all
    go through one ``WebhookGuard``: header checks, body deadline and cap, concurrency)."""
    app = web.Application(client_max_size=1024 * 1024)
    install(app, GuardLimits(deadline=core.settings.webhook_body_timeout))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        clients = core.apps.by_name
        found = await asyncio.gather(ping(core.db.engine), *map(reachable, clients.values()))
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


def enabled_names(settings: CoreSettings) -> Iterable[str]:
    return (spec.name for spec in PLATFORMS if spec.enabled(settings))
