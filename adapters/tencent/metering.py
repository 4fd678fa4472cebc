"""WeChat and WeCom API calls counted in the process's metrics, by API path.

WeChat never answers 429: a call over its limits gets HTTP 200 and a frequency errcode, so the
small JSON bodies are read here to count those (the body is buffered once, callers read it from
memory). Media bodies are left alone.
"""

from __future__ import annotations

import httpx
import orjson

from bot.ops.metrics import Metrics

# 45009: daily API quota reached; 45011: API calls too frequent; 45033/45047: per-user limits
# of the customer-service API; -1 with HTTP 429 would be a proxy's.
RATE_ERRCODES = frozenset({45009, 45011, 45033, 45047})
_SMALL = 64 * 1024


def meter(http: httpx.AsyncClient, metrics: Metrics, platform: str) -> httpx.AsyncClient:
    """Add the counting hook to ``http`` (each adapter's own client); returns it."""

    async def on_response(response: httpx.Response) -> None:
        method = response.request.url.path
        metrics.platform_call(platform, method, limited=await _is_limited(response))

    http.event_hooks["response"] = [*http.event_hooks["response"], on_response]
    return http


async def _is_limited(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return True
    kind = response.headers.get("content-type", "")
    size = int(response.headers.get("content-length") or 0)
    if not (kind.startswith(("application/json", "text/plain")) and 0 < size <= _SMALL):
        return False
    try:
        body = orjson.loads(await response.aread())
    except (orjson.JSONDecodeError, httpx.HTTPError):
        return False
    return isinstance(body, dict) and body.get("errcode") in RATE_ERRCODES
