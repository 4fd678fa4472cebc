"""The Dify apps from the settings: one client per app (one HTTP pool per API base), each app's
mode learned at startup, and each app's ``inputs`` mapping checked against its form."""

from __future__ import annotations

import asyncio
import logging

import httpx

from bot.answering.inputs import check_inputs
from bot.dify.apps import DifyApps
from bot.dify.client import CHAT_MODES, DifyClient, build_http
from bot.errors import (
    ConfigError,
    DifyAuthError,
    DifyError,
    DifyUnavailable,
)
from bot.ops.metrics import Metrics
from bot.routing import DEFAULT_APP, AppSpec, Routing
from difybot.config import CoreSettings

log = logging.getLogger(__name__)


def build_apps(
    settings: CoreSettings,
    routing: Routing,
    *,
    metrics: Metrics,
    transport: httpx.AsyncBaseTransport | None = None,
) -> DifyApps:
    """A client per app; apps on the same API base share one connection pool."""
    pools: dict[str, httpx.AsyncClient] = {}

    def pool(base: str) -> httpx.AsyncClient:
        if base not in pools:
            pools[base] = build_http(
                base,
                connect_timeout=settings.dify_connect_timeout,
                read_timeout=settings.dify_read_timeout,
                transport=transport,
            )
        return pools[base]

    def client(name: str, key: str, base: str, mode: str) -> DifyClient:
        return DifyClient(
            pool(base),
            api_key=key,
            mode=mode,
            query_variable=settings.dify_workflow_query_variable,
            max_retries=settings.dify_max_retries,
            first_event_timeout=settings.dify_first_event_timeout,
            auto_generate_name=settings.dify_auto_generate_name,
            on_error=lambda exc: metrics.dify_error(name, exc.status, exc.code),
        )

    key = settings.dify_api_key.get_secret_value()
    default = client(DEFAULT_APP, key, settings.dify_base, settings.dify_app_mode)
    extra = {
        spec.name: client(spec.name, spec.api_key, spec.api_base or settings.dify_base, spec.mode)
        for spec in routing.extra_apps
    }
    return DifyApps(default, extra, pools)


async def prepare_apps(apps: DifyApps, routing: Routing, *, required: bool = False) -> None:
    """Learn every app's mode and check its inputs, all apps at once. A rejected key, a base
    URL that is not Dify's Service API or a wrong ``inputs`` mapping stops startup; an
    unreachable Dify does not (read later) unless ``required``."""
    names = list(apps.by_name)
    results = await asyncio.gather(
        *(_prepare(apps.by_name[name], routing.apps[name], routing.source, required=required)
          for name in names)
    )  # fmt: skip
    problems = [problem for found in results for problem in found]
    if problems:
        raise ConfigError("\n".join(problems))


async def _prepare(dify: DifyClient, spec: AppSpec, source: str, *, required: bool) -> list[str]:
    variable = spec.api_key_env or "DIFY_API_KEY"
    where = "api_base in the routes file" if spec.api_base else "DIFY_API_BASE"
    try:
        if required and dify.mode:  # a configured mode reads nothing: ask once anyway
            await dify.info()
        mode = await dify.detect_mode()
        log.info("Dify app %s: mode %s", spec.name, mode)
        if not spec.inputs:
            return []
        parameters = await dify.parameters()
    except DifyAuthError as exc:
        return [f"{variable}: Dify rejected the key of app {spec.name!r} ({exc.status} {exc.code})"]
    except DifyError as exc:
        if exc.status == 404 or exc.code == "not_json":
            hint = _api_hint(dify)
            return [f"{where}: {dify.base_url} is not Dify's Service API ({exc}); {hint}"]
        if required:
            raise DifyUnavailable(
                f"cannot reach Dify at {dify.base_url}: {exc.reason or exc.message}; check "
                f"{where} and that Dify is running",
                status=exc.status, code=exc.code, reason=exc.reason,
            ) from None  # fmt: skip
        log.warning("Dify app %s not reachable at startup (%s); will retry later", spec.name, exc)
        return []
    return check_inputs(spec, parameters, source=source, filled=query_inputs(dify))


def _api_hint(dify: DifyClient) -> str:
    """Dify serves its Service API under /v1 (``https://api.dify.ai/v1``, self-hosted
    ``http://host/v1``); a base without it reaches the web app or a 404."""
    base = dify.base_url
    if base.endswith("/v1"):
        return "the Service API base is the one shown on the app's API Access page"
    return f"the Service API base ends in /v1: try {base}/v1"


def query_inputs(dify: DifyClient) -> frozenset[str]:
    """Variables difybot fills itself: workflow and completion apps get the question as one."""
    return frozenset() if dify.mode in CHAT_MODES else frozenset({dify.query_variable})


async def reachable(dify: DifyClient) -> bool:
    """``/info`` once, no retry, at most 5 s: what /readyz asks of each app."""
    try:
        async with asyncio.timeout(5):
            await dify.info(retry=False)
    except (DifyError, TimeoutError):
        return False
    return True
