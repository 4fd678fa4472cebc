"""The Slack adapter: a bolt ``AsyncApp`` over Socket Mode and/or HTTP (``POST /slack/events``)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack.actions import ButtonActions
from adapters.slack.answers import People, SlackAnswers
from adapters.slack.budget import slack_scheduler
from adapters.slack.commands import DifyCommand
from adapters.slack.events import PLATFORM, RouteOptions, Router, TtlMap
from adapters.slack.files import SlackFiles
from adapters.slack.forms import FormActions
from adapters.slack.inbound import check_shape, to_payload
from adapters.slack.listeners import EventListeners
from adapters.slack.reply import ReplyOptions
from adapters.slack.settings import SlackSettings
from adapters.spec import Services
from adapters.webhooks import guard_of
from bot.contract import Allowlist, Platform
from bot.errors import CallbackRejected, ConfigError, connection_reason
from bot.ops.metrics import Metrics

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
_TIMEOUT = 15  # seconds, every Web API call
_CONNECTIONS = 100  # Web API calls in flight at once; more wait for a free connection
_KEEPALIVE = 30.0  # seconds an idle Web API connection is kept
_RETRY_MEMORY = 15 * 60.0  # Slack retries an event up to ~5 minutes later
MAX_BODY = 1024 * 1024  # Slack's largest payloads (interactivity with big views) stay far below
SIGNATURE_WINDOW = 300.0  # seconds: slack-sdk's SignatureVerifier refuses older timestamps
# Errors that mean the token itself is wrong (Slack's Web API error codes), not Slack's state.
_TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive",
     "not_allowed_token_type", "invalid_token"}
)  # fmt: skip


class SlackAdapter:
    """Implements ``bot.contract.Adapter``. HTTP mode needs no start: the route is added when
    the adapter is built; Socket Mode connects in ``start``."""

    name = "slack"

    def __init__(
        self,
        bolt: AsyncApp,
        answers: SlackAnswers,
        *,
        app_token: str | None,
        signing_secret: str | None = None,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bolt = bolt
        self._clock = clock  # Unix seconds, for the signature's timestamp window
        self.answers = answers
        self._session = session  # the Web API clients' connection pool, closed at stop
        self._app_token = app_token
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self._socket: AsyncSocketModeHandler | None = None

    async def start(self) -> None:
        await self._check_tokens()
        if self._app_token:
            # Uses bolt's client, so apps.connections.open goes to SLACK_API_URL too.
            self._socket = AsyncSocketModeHandler(self.bolt, self._app_token)
            await self._socket.connect_async()  # type: ignore[no-untyped-call]  # bolt: untyped
            log.info("Slack Socket Mode connected")

    async def _check_tokens(self) -> None:
        """A token Slack refuses stops the start with one line naming it (Socket Mode would
        retry it forever). An unreachable Slack does not: the connection keeps being retried."""
        calls = [("SLACK_BOT_TOKEN", self.bolt.client.auth_test)]
        if self._app_token:
            token = self._app_token
            opening = functools.partial(self.bolt.client.apps_connections_open, app_token=token)
            calls.append(("SLACK_APP_TOKEN", opening))  # hands out a URL; nothing connects
        for variable, call in calls:
            try:
                await call()
            except SlackApiError as exc:
                error = exc.response.get("error")
                if error in _TOKEN_REFUSED:
                    raise ConfigError(
                        f"{variable}: Slack refused the token ({error}); copy it again from "
                        "the app's settings at api.slack.com/apps"
                    ) from None
                log.warning("Slack: %s answered %s at start", variable, error)
            except (aiohttp.ClientError, TimeoutError) as exc:
                reason = connection_reason(exc) or type(exc).__name__
                log.warning("cannot reach Slack at start (%s); will keep trying", reason)
                return

    async def stop(self) -> None:
        if self._socket is not None:
            await self._socket.close_async()  # type: ignore[no-untyped-call]  # bolt: untyped
            self._socket = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def precheck(self, request: web.Request) -> None:
        """Before the body: a request without Slack's signature headers, or signed more than
        five minutes from now (slack-sdk's window), is refused unread."""
        stamp = request.headers.get("X-Slack-Request-Timestamp", "")
        if not stamp.isdigit() or not request.headers.get("X-Slack-Signature"):
            raise CallbackRejected("no Slack signature", status=401)
        if abs(self._clock() - int(stamp)) > SIGNATURE_WINDOW:
            raise CallbackRejected("signature timestamp out of the 5-minute window", status=401)

    async def handle(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """HTTP mode: the signature is checked on the raw bytes before anything is parsed, the
        payload read and held to Slack's shapes (bolt would crash on others), then bolt
        dispatches."""
        if not self._signed(body, request.headers):
            raise CallbackRejected("bad signature", status=401)
        check_shape(to_payload(body, request.content_type))
        bolt_request = AsyncBoltRequest(
            body=body.decode("utf-8"),
            query=request.query_string,
            headers=request.headers,  # type: ignore[arg-type]  # bolt: a mapping of str
        )
        try:
            response = await self.bolt.async_dispatch(bolt_request)
        except Exception as exc:  # bolt's own parsing of a shape we let through
            raise CallbackRejected(f"bolt could not read it ({type(exc).__name__})") from None
        return await to_aiohttp_response(response)

    def _signed(self, body: bytes, headers: Mapping[str, str]) -> bool:
        stamp, signature = (
            headers.get("X-Slack-Request-Timestamp", ""),
            headers.get("X-Slack-Signature", ""),
        )
        if self._verifier is None or not stamp.isdigit() or not signature:
            return self._verifier is None
        try:
            return self._verifier.is_valid(body=body, timestamp=stamp, signature=signature)
        except UnicodeDecodeError:  # slack-sdk decodes the body; Slack only sends UTF-8
            return False


def build_slack(settings: SlackSettings, services: Services) -> Platform:
    """The platform from the settings; adds ``POST /slack/events`` when a signing secret is
    set (HTTP mode), connects Socket Mode at start when an app token is."""
    assert settings.slack_bot_token is not None
    token = settings.slack_bot_token.get_secret_value()
    base_url = settings.slack_api_base
    clock = services.clock
    # Listener calls may wait out a 429; reply edits must not (they skip instead), so the
    # replies get a client of their own without the retry handler.
    session = web_session()
    # metrics: both clients count their calls and 429s (adapters/slack/metering.py).
    metrics = services.metrics
    bolt_client = MeteredWebClient(token=token, base_url=base_url, session=session, metrics=metrics)
    bolt_client.retry_handlers.append(MeteredRateLimitRetryHandler(metrics, max_retry_count=2))
    secret = settings.slack_signing_secret
    bolt = AsyncApp(
        client=bolt_client,
        # Ack only after the listener ran: events are recorded in the journal before Slack
        # hears they arrived. Listeners stay fast; slow work runs after (SlackAnswers.later).
        process_before_response=True,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=secret is not None,
    )
    answers = SlackAnswers(
        inbox=services.inbox,
        client=MeteredWebClient(token=token, base_url=base_url, session=session, metrics=metrics),
        scheduler=slack_scheduler(
            services.budgets,
            update_per_minute=settings.slack_update_budget_per_minute,
            scale=settings.slack_budget_scale,
            metrics=metrics,
            clock=clock,
            sleep=services.sleep,
        ),
        options=_reply_options(settings),
        sleep=services.sleep,
        files=services.answer_files,
        people=_people(settings, bolt_client, clock),
        threads=services.threads,
        thread_ttl=settings.slack_thread_memory_hours * 3600,
    )
    _register(bolt, settings, answers, clock, scope=services.conversation_scope)
    app_token = settings.slack_app_token.get_secret_value() if settings.slack_app_token else None
    adapter = SlackAdapter(
        bolt,
        answers,
        app_token=app_token,
        signing_secret=secret.get_secret_value() if secret else None,
        session=session,
    )
    if secret is not None:
        route = guard_of(services.web).route(
            adapter.handle, max_body=MAX_BODY, precheck=adapter.precheck
        )
        services.web.router.add_post(EVENTS_PATH, route)
    # one of the two modes is set: the settings' credential rule saw to it
    return Platform(
        name=PLATFORM,
        adapter=adapter,
        reply=answers.reply,
        files=SlackFiles(answers.client, services.fetch, token=token, api_url=base_url),
        allowlist=Allowlist.of(
            workspaces=settings.slack_allowed_teams,
            channels=settings.slack_allowed_channels,
            users=settings.slack_allowed_users,
        ),
    )


def web_session() -> aiohttp.ClientSession:
    """One keep-alive pool for every Web API call. Without a session slack-sdk opens and closes
    a connection (and TLS) per call: ~15 % of the event loop in benchmarks/streaming_load.py.
    The session's timeout is the per-call one (slack-sdk applies ``timeout=`` only without it)."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=_TIMEOUT),
        connector=aiohttp.TCPConnector(limit=_CONNECTIONS, keepalive_timeout=_KEEPALIVE),
    )


def _people(
    settings: SlackSettings, client: AsyncWebClient, clock: Callable[[], float]
) -> People | None:
    return People(client, TtlMap(86_400.0, clock=clock)) if settings.slack_user_lookup else None


def _register(
    bolt: AsyncApp,
    settings: SlackSettings,
    answers: SlackAnswers,
    clock: Callable[[], float],
    *,
    scope: str,
) -> None:
    memory_ttl = settings.slack_thread_memory_hours * 3600
    router = Router(
        TtlMap(memory_ttl, clock=clock),
        TtlMap(_RETRY_MEMORY, clock=clock),
        RouteOptions(
            allow_bots=settings.slack_allow_bots,
            dm_threads=settings.slack_dm_threads,
            channel_scope=scope or "thread",
        ),
    )
    EventListeners(router, answers, TtlMap(memory_ttl, clock=clock)).register(bolt)
    DifyCommand(router, answers).register(bolt)
    ButtonActions(router, answers).register(bolt)
    FormActions(answers).register(bolt)


def _reply_options(settings: SlackSettings) -> ReplyOptions:
    return ReplyOptions(
        native_streaming=settings.slack_native_streaming,
        markdown_blocks=settings.slack_markdown_blocks,
        feedback=settings.slack_feedback_buttons,
    )


# ---- metering ----------------------------------------------------------------------------------
# Every slack-sdk method goes through ``api_call``; a 429 that the bolt client's retry handler
# absorbs never reaches it, so the handler counts the ones it retries.


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
