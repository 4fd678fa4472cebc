"""Every platform's webhook routes, guarded the same way before any platform code runs.

A request is checked in order of cost: its cheap headers first (a platform's ``precheck``: the
signature's timestamp window, the parameters a signed request must carry), then its announced
length, then its body, read under a deadline and a size cap. Until the platform's handler has
checked the signature, a request is unauthenticated: at most ``max_bodies`` of those are read at
once, and at most ``max_large`` of them may be large (past ``large_body`` bytes, or of unknown
length), so a crowd of slow or stalled bodies holds a bounded amount of memory and leaves room
for the platform's own small requests. A request past a limit is refused at once (503 with
Retry-After: both Slack and WeChat retry) rather than queued.

A refusal closes the connection when the body was not read to its end: otherwise aiohttp keeps
reading and discarding it for up to ``lingering_time`` (10 s) to reuse the connection, which a
stalled client turns into a held connection. Refusals and hang-ups are one INFO line each,
never a traceback; handlers raise ``CallbackRejected`` to answer with a bare status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from bot.errors import CallbackRejected

log = logging.getLogger(__name__)

LARGE_BODY = 64 * 1024  # a platform's own callbacks are a few KB; past this a body is "large"
_CHUNK = 64 * 1024


class HungUp(Exception):
    """The client closed the connection before its body arrived."""


Precheck = Callable[[web.Request], None]
Handler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """``deadline``: seconds for a whole body to arrive; the other limits as the module says."""

    deadline: float = 5.0
    large_body: int = LARGE_BODY
    max_large: int = 8
    max_bodies: int = 128


@dataclass(slots=True)
class _InFlight:
    """Unauthenticated bodies being received now, and how many of them are large."""

    bodies: int = 0
    large: int = 0


@dataclass
class WebhookGuard:
    """One per web server: the limits are shared by every platform's routes."""

    limits: GuardLimits = field(default_factory=GuardLimits)
    in_flight: _InFlight = field(default_factory=_InFlight)

    def route(
        self,
        handler: Handler,
        *,
        max_body: int,
        precheck: Precheck | None = None,
        read_body: bool = True,
    ) -> Route:
        """An aiohttp handler: ``precheck``, then the body (``b""`` when ``read_body`` is
        False, as for URL verification GETs), then ``handler(request, body)``."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            try:
                if precheck is not None:
                    precheck(request)
                body = await self._receive(request, max_body) if read_body else b""
                return await handler(request, body)
            except CallbackRejected as refused:
                log.info("%s %s refused (%d): %s",
                         request.method, request.path, refused.status, refused.message)  # fmt: skip
                return await _refuse(request, refused)
            except HungUp:
                log.info("%s %s: the client hung up before its body arrived",
                         request.method, request.path)  # fmt: skip
                return web.Response(status=400)  # never sent: the connection is gone

        return guarded

    async def _receive(self, request: web.Request, max_body: int) -> bytes:
        announced = request.content_length
        if announced is not None and announced > max_body:
            raise CallbackRejected(f"body of {announced} bytes (limit {max_body})", status=413)
        large = announced is None or announced > self.limits.large_body
        self._enter(large)
        try:
            async with asyncio.timeout(self.limits.deadline):
                return await self._read(request, max_body)
        except TimeoutError:
            raise CallbackRejected(
                f"body not received within {self.limits.deadline:g} s", status=408
            ) from None
        finally:
            self._leave(large)

    def _enter(self, large: bool) -> None:
        counts, limits = self.in_flight, self.limits
        if counts.bodies >= limits.max_bodies or (large and counts.large >= limits.max_large):
            busy = "large bodies" if large and counts.large >= limits.max_large else "bodies"
            raise CallbackRejected(f"too many {busy} being received", status=503, retry_after=1)
        counts.bodies += 1
        counts.large += large

    def _leave(self, large: bool) -> None:
        self.in_flight.bodies -= 1
        self.in_flight.large -= large

    async def _read(self, request: web.Request, max_body: int) -> bytes:
        """The body, refused past ``max_body`` as it arrives (the length may lie or be absent)."""
        body = bytearray()
        try:
            while chunk := await request.content.read(_CHUNK):
                if len(body) + len(chunk) > max_body:
                    raise CallbackRejected(f"body past {max_body} bytes", status=413)
                body += chunk
        except ConnectionError:
            raise HungUp() from None
        if request.content_length is not None and len(body) < request.content_length:
            raise HungUp()
        return bytes(body)


async def _refuse(request: web.Request, refused: CallbackRejected) -> web.StreamResponse:
    """The bare status; the connection closed behind it when the body is still coming."""
    headers = {"Retry-After": f"{refused.retry_after:.0f}"} if refused.retry_after else None
    response = web.Response(status=refused.status or 400, text="", headers=headers)
    if request.content.is_eof():
        return response
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # no lingering read of the rest
    return response


GUARD = web.AppKey("webhook_guard", WebhookGuard)


def guard_of(app: web.Application) -> WebhookGuard:
    """The server's guard (``install`` puts it there; a bare app gets the default limits)."""
    if GUARD not in app:
        app[GUARD] = WebhookGuard()
    return app[GUARD]


def install(app: web.Application, limits: GuardLimits) -> WebhookGuard:
    app[GUARD] = WebhookGuard(limits)
    return app[GUARD]
