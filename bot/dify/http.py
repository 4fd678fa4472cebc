"""Dify's HTTP error envelope mapped onto our error tree, and the retry policy for opening calls."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import httpx
import orjson
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot.errors import (
    TIMEOUT,
    ConversationNotFound,
    DifyAuthError,
    DifyError,
    DifyHTTPError,
    DifyQuotaExceeded,
    DifyRateLimited,
    DifyUnavailable,
    FormAlreadySubmitted,
    FormExpired,
    FormInvalid,
    connection_reason,
)

MAX_ERROR_BODY = 64 * 1024
_UNAVAILABLE = {502, 503, 504}
# Human Input form errors (Dify 1.14.1, dify-captures/hitl_err_form_*): codes no other route uses.
_FORM_ERRORS: dict[str, type[DifyHTTPError]] = {
    "human_input_form_submitted": FormAlreadySubmitted,
    "human_input_form_expired": FormExpired,
    "invalid_form_data": FormInvalid,
}


def to_http_error(status: int, body: bytes, headers: httpx.Headers) -> DifyError:
    """The error for a non-2xx answer. Dify's envelope is ``{code, message, status}``."""
    code, message = _envelope(body)
    retry_after = _retry_after(headers.get("retry-after"))
    kwargs: dict[str, Any] = {"status": status, "code": code, "retry_after": retry_after}
    text = message or f"HTTP {status}"
    # Dify 1.13.2 rejects over its per-app concurrency limit with 400 invalid_param "Too many
    # requests…", not the documented 429 (dify-captures/err_rate_limit_*): retry both.
    if (status == 429 and code in ("too_many_requests", "")) or (
        status == 400 and message.startswith("Too many requests")
    ):
        return DifyRateLimited(text, **kwargs)
    if status == 429 or code == "provider_quota_exceeded":
        return DifyQuotaExceeded(text, **kwargs)
    if code in _FORM_ERRORS:
        return _FORM_ERRORS[code](text, **kwargs)
    if (status == 404 and "conversation" in message.lower()) or code == "conversation_completed":
        return ConversationNotFound(text, **kwargs)
    if status in (401, 403):
        return DifyAuthError(text, **kwargs)
    if status in _UNAVAILABLE:
        return DifyUnavailable(text, **kwargs)
    return DifyHTTPError(text, **kwargs)


def _envelope(body: bytes) -> tuple[str, str]:
    try:
        parsed = orjson.loads(body[:MAX_ERROR_BODY]) if body else None
    except orjson.JSONDecodeError:
        return "", ""
    if not isinstance(parsed, dict):
        return "", ""
    code, message = parsed.get("code"), parsed.get("message")
    return (code if isinstance(code, str) else "", message if isinstance(message, str) else "")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def to_transport_error(exc: httpx.TransportError) -> DifyError:
    """Before any response: only a failure to connect proves Dify never saw the request.

    The reason comes from the cause chain, not the class: httpx-aiohttp turns every aiohttp
    connector error (refused, unknown host, TLS) into ``httpx.ConnectTimeout``."""
    reason = connection_reason(exc)
    if _never_sent(exc):
        if not reason:
            reason = TIMEOUT if isinstance(exc, httpx.TimeoutException) else "cannot connect"
        return DifyUnavailable(f"cannot reach Dify: {reason}", code="unreachable", reason=reason)
    # A read failure before the headers means Dify may have taken the message: never retry it.
    if not reason:
        reason = TIMEOUT if isinstance(exc, httpx.TimeoutException) else type(exc).__name__
    return DifyError(f"Dify did not answer: {reason}", code="no_response", reason=reason)


def _never_sent(exc: httpx.TransportError) -> bool:
    """Whether the request surely never reached Dify. httpx-aiohttp also maps a server that hung
    up after taking the request (``ServerDisconnectedError``) to ``ConnectTimeout``: under that
    transport only aiohttp's connector errors (and its connect timeout) prove it."""
    link: BaseException | None = exc.__cause__
    while link is not None:
        if isinstance(link, aiohttp.ClientConnectionError):
            return isinstance(link, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
        link = link.__cause__ or link.__context__
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)


def backoff(
    attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 8.0
) -> float:
    """Full-jitter exponential backoff, never shorter than the server's Retry-After."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    return max(delay, retry_after or 0.0)


def retrying(max_retries: int, sleep: Callable[[float], Awaitable[None]]) -> AsyncRetrying:
    """Retries for the opening of a call: only errors that prove nothing was answered yet."""

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, DifyError) else None
        return backoff(state.attempt_number, retry_after)

    return AsyncRetrying(
        retry=retry_if_exception(lambda exc: isinstance(exc, DifyError) and exc.retryable),
        stop=stop_after_attempt(max_retries + 1),
        wait=wait,
        sleep=sleep,
        reraise=True,
    )
