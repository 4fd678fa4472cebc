"""``difybot check``: each configured service asked for real, one verdict (and its fix) each.

Dify apps (``/info``, ``/parameters``, the key, the ``inputs`` mapping), the database (reachable,
migrated) and every configured platform (their own modules say how: ``adapters.*.check``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from adapters.spec import Check, Probe
from bot.answering.inputs import check_inputs, form_variables
from bot.dify.client import DifyClient
from bot.errors import ConfigError, DifyAuthError, DifyError
from bot.ops.metrics import Metrics
from bot.routing import AppSpec, Routing
from difybot.apps import build_apps, query_inputs
from difybot.config import CoreSettings as Settings
from difybot.config import load_routes
from difybot.platforms import PLATFORMS

TIMEOUT = 15.0  # seconds for any one check


async def run_checks(settings: Settings) -> list[Check]:
    """Every check, concurrently; a check that hangs fails after ``TIMEOUT`` seconds."""
    routing, routes_check = _routing(settings)
    apps = build_apps(settings, routing, metrics=Metrics())
    try:
        probes = [_dify_probe(name, dify, routing.apps[name], settings, routing.source)
                  for name, dify in apps.by_name.items()]  # fmt: skip
        probes.append(("database", lambda: _one(check_database(settings.database_url))))
        probes += platform_probes(settings)
        found = await asyncio.gather(*(_bounded(name, probe) for name, probe in probes))
    finally:
        await apps.aclose()
    return [*routes_check, *(check for checks in found for check in checks)]


def _routing(settings: Settings) -> tuple[Routing, list[Check]]:
    if not settings.routes_file:
        return Routing(), []
    try:
        routing = load_routes(settings)
    except ConfigError as exc:
        fix = "correct the routes file (the default app is checked meanwhile)"
        return Routing(), [Check("routes file", False, str(exc), fix)]
    names = ", ".join(spec.name for spec in routing.extra_apps) or "none"
    detail = (
        f"{settings.routes_file}: {len(routing.routes)} route(s), apps besides default: {names}"
    )
    return routing, [Check("routes file", True, detail)]


async def _one(check: Awaitable[Check]) -> list[Check]:
    return [await check]


def _dify_probe(
    name: str, dify: DifyClient, spec: AppSpec, settings: Settings, source: str
) -> Probe:
    base = spec.api_base or settings.dify_base
    return f"Dify app {name}", lambda: _one(check_dify(name, dify, spec, base=base, source=source))


async def _bounded(name: str, probe: Callable[[], Awaitable[list[Check]]]) -> list[Check]:
    try:
        async with asyncio.timeout(TIMEOUT):
            return await probe()
    except TimeoutError:
        return [Check(name, False, f"no answer within {TIMEOUT:.0f} s", "check the address")]


async def check_dify(
    name: str, dify: DifyClient, spec: AppSpec, *, base: str, source: str
) -> Check:
    """The key works (``/info``), the app's form (``/parameters``) fits the inputs mapping."""
    title = f"Dify app {name}"
    variable = spec.api_key_env or "DIFY_API_KEY"
    try:
        info = await dify.info(retry=False)
        dify.mode = dify.mode or str(info.get("mode") or "")
        parameters = await dify.parameters()
    except DifyAuthError as exc:
        fix = f"set {variable} to the app's API key (Dify: the app, then API Access)"
        return Check(title, False, f"{base} rejected the key ({exc.status} {exc.code})", fix)
    except DifyError as exc:
        where = "api_base in the routes file" if spec.api_base else "DIFY_API_BASE"
        fix = f"check {where} (the Service API base, ending in /v1) and that Dify is up"
        return Check(title, False, f"cannot use {base}: {exc}", fix)
    problems = check_inputs(spec, parameters, source=source, filled=query_inputs(dify))
    label = f"{info.get('name') or 'unnamed'!s} ({dify.mode or 'unknown mode'}) at {base}"
    if problems:
        return Check(title, False, f"{label}: inputs do not fit the app", "; ".join(problems))
    inputs = len(form_variables(parameters))
    return Check(title, True, f"{label}, {inputs} input variable(s), {len(spec.inputs)} mapped")


async def check_database(url: str) -> Check:
    """Reachable, and at this version's schema revision."""
    from storage.db import create_engine, ping, safe_url, to_url
    from storage.migrate import current_revision, head_revision

    shown = safe_url(to_url(url))
    engine = create_engine(url)
    try:
        if not await ping(engine):
            fix = "check DATABASE_URL and that the database server is up"
            return Check("database", False, f"cannot reach {shown}", fix)
        current, head = await current_revision(engine), head_revision()
    finally:
        await engine.dispose()
    if current != head:
        fix = "run `difybot db upgrade` (or start `difybot serve` with DATABASE_AUTO_MIGRATE=true)"
        return Check(
            "database", False, f"{shown} is at {current or 'no schema'}, needs {head}", fix
        )
    return Check("database", True, f"{shown} reachable, schema at {head}")


def platform_probes(settings: Settings) -> list[Probe]:
    """Each configured platform's probes (its package imported only when it is configured)."""
    return [
        probe for spec in PLATFORMS if spec.enabled(settings) for probe in spec.probes(settings)
    ]
