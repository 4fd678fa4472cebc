"""When a WeChat or WeCom API call was refused for its limits (``adapters.metering``'s predicate).

WeChat never answers 429: a call over its limits gets HTTP 200 and a frequency errcode, so the
small JSON bodies are read here to count those (the body is buffered once, callers read it from
memory). Media bodies are left alone.
"""

from __future__ import annotations

import httpx
import orjson

# 45009: daily API quota reached; 45011: API calls too frequent; 45033/45047: per-user limits
# of the customer-service API; -1 with HTTP 429 would be a proxy's.
RATE_ERRCODES = frozenset({45009, 45011, 45033, 45047})
_SMALL = 64 * 1024


async def is_limited(response: httpx.Response) -> bool:
    """WeChat never answers 429 itself: a frequency errcode in an HTTP 200 body."""
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
