"""Slack Web API calls and their 429s counted in the process's metrics, by API method.

Every slack-sdk method goes through ``api_call``; a 429 that the bolt client's retry handler
absorbs never reaches it, so the handler counts the ones it retries.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.ops.metrics import Metrics

PLATFORM = "slack"


class MeteredWebClient(AsyncWebClient):
    """An ``AsyncWebClient`` that counts each call it makes and each 429 it gets back."""

    def __init__(self, *args: Any, metrics: Metrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def api_call(self, api_method: str, **kwargs: Any) -> AsyncSlackResponse:
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            limited = getattr(exc.response, "status_code", 0) == 429
            self._metrics.platform_call(PLATFORM, api_method, limited=limited)
            raise
        self._metrics.platform_call(PLATFORM, api_method)
        return response


class MeteredRateLimitRetryHandler(AsyncRateLimitErrorRetryHandler):
    """slack-sdk's 429 retry, counting each 429 it retries (the last one reaches api_call)."""

    def __init__(self, metrics: Metrics, *, max_retry_count: int = 1) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self._metrics = metrics

    async def can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        retry = await super().can_retry_async(
            state=state, request=request, response=response, error=error
        )
        if retry:
            method = request.url.rstrip("/").rsplit("/", 1)[-1]
            self._metrics.platform_limited.labels(PLATFORM, method).inc()
        return retry
