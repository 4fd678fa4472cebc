"""One streamed Dify answer: SSE frames in, typed events out, stale conversations detected."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from bot.dify_events import to_event
from bot.errors import ConversationNotFound, DifyProtocolError, DifyStreamCut
from bot.models import AnswerEnd, AnswerEvent, TextDelta, TextReplace
from bot.sse import iter_events

if TYPE_CHECKING:
    from bot.dify import AnswerRequest, DifyClient

# After the closing event Dify may still send tts_message_end or workflow_finished; reading them
# lets the connection go back to the pool, but never for longer than this.
DRAIN_SECONDS = 2.0


class AnswerStream:
    """Iterate to get events; ``task_id``/``conversation_id``/``message_id`` fill in as they come.

    The stream ends at the first closing event (``message_end`` or ``workflow_finished``), or when
    the connection closes. A broken connection raises DifyStreamCut.
    """

    def __init__(
        self, client: DifyClient, response: httpx.Response, request: AnswerRequest
    ) -> None:
        self._client = client
        self._response = response
        self._request = request
        self.task_id = ""
        self.conversation_id = ""
        self.message_id = ""
        self.pings = 0
        self.texts = 0

    async def __aiter__(self) -> AsyncIterator[AnswerEvent]:
        events = self._events()
        try:
            if self._request.conversation_id:
                first = await self._first_event(events)
                if first is None:
                    return
                yield first
            async for event in events:
                yield event
        finally:
            await events.aclose()

    async def _first_event(self, events: AsyncIterator[AnswerEvent]) -> AnswerEvent | None:
        """Wait for the first event; if it takes too long, check the conversation still exists.

        Dify 1.13.2 answers a Chatflow stream for an unknown or deleted conversation with HTTP 200,
        one ping, then silence until its 300 s idle timeout (captures: err_unknown_conversation);
        GET /messages for that conversation answers 404, which is how we tell it from a slow app.
        """
        waiter = asyncio.ensure_future(_next(events))
        try:
            done, _ = await asyncio.wait({waiter}, timeout=self._client.first_event_timeout)
            if not done and not await self._conversation_exists():
                raise ConversationNotFound(
                    "conversation unknown to Dify (silent stream)", status=404, code="not_found"
                )
            return await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
                with contextlib.suppress(BaseException):
                    await waiter

    async def _conversation_exists(self) -> bool:
        conversation_id = self._request.conversation_id or ""
        return await self._client.conversation_exists(conversation_id, user=self._request.user)

    async def _events(self) -> AsyncGenerator[AnswerEvent, None]:
        mode, origin = self._client.mode, self._client.origin
        try:
            async for sse in iter_events(self._response.aiter_bytes()):
                if sse.event == "ping" or not sse.data:
                    self.pings += 1
                    continue
                payload = _load(sse.data)
                self._track(payload)
                event = to_event(payload, mode=mode, origin=origin)
                if event is None:
                    continue
                if isinstance(event, TextDelta | TextReplace):
                    self.texts += 1
                elif isinstance(event, AnswerEnd):
                    self._check_stale(event, payload)
                    yield event
                    await self._drain()
                    return
                yield event
        except httpx.TransportError as exc:
            raise DifyStreamCut(f"stream broken: {type(exc).__name__}", code="stream_cut") from exc

    def _track(self, payload: dict[str, Any]) -> None:
        for name in ("task_id", "conversation_id", "message_id"):
            value = payload.get(name)
            if value and isinstance(value, str) and not getattr(self, name):
                setattr(self, name, value)

    def _check_stale(self, end: AnswerEnd, payload: dict[str, Any]) -> None:
        """A Chatflow run for a stale conversation fails at once, without conversation ids
        (dify-api.md §6.3): report it as ConversationNotFound so the caller retries fresh."""
        if (
            end.status == "failed"
            and self._request.conversation_id
            and not payload.get("conversation_id")
            and not self.texts
        ):
            raise ConversationNotFound(end.error or "conversation not found", code="not_found")

    async def _drain(self) -> None:
        with contextlib.suppress(Exception, TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                async for _ in self._response.aiter_bytes():
                    pass


async def _next(events: AsyncIterator[AnswerEvent]) -> AnswerEvent | None:
    return await anext(events, None)


def _load(data: str) -> dict[str, Any]:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise DifyProtocolError("stream frame is not JSON") from exc
    if not isinstance(payload, dict):
        raise DifyProtocolError("stream frame is not a JSON object")
    return payload
