"""A platform's HTTP calls counted in the process's metrics, by API path, and whether the
platform refused one for its rate limits (how it says so differs: a predicate per platform)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx

from bot.ops.metrics import Metrics

Limited = Callable[[httpx.Response], Awaitable[bool]]


async def is_429(response: httpx.Response) -> bool:
    return response.status_code == 429


def meter(
    http: httpx.AsyncClient, metrics: Metrics, platform: str, *, limited: Limited = is_429
) -> httpx.AsyncClient:
    """Add the counting hook to ``http`` (each adapter's own client); returns it."""

    async def on_response(response: httpx.Response) -> None:
        method = response.request.url.path
        metrics.platform_call(platform, method, limited=await limited(response))

    http.event_hooks["response"] = [*http.event_hooks["response"], on_response]
    return http
