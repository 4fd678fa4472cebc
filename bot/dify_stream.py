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
from bot.sse import Frame, iter_frames

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

    def __aiter__(self) -> AsyncGenerator[AnswerEvent, None]:
        return self._events()

    async def _events(self) -> AsyncGenerator[AnswerEvent, None]:
        mode, origin = self._client.mode, self._client.origin
        tracking = True
        batches = iter_frames(self._response.aiter_bytes())
        try:
            if conversation_id := self._request.conversation_id:
                first = await self._first_data(batches, conversation_id)
                batches = _chain(first, batches)
            async for batch in batches:
                for name, data in batch:
                    if not data or name == "ping":
                        self.pings += name == "ping"
                        continue
                    try:
                        payload = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise DifyProtocolError("stream frame is not JSON") from exc
                    if not isinstance(payload, dict):
                        raise DifyProtocolError("stream frame is not a JSON object")
                    if tracking:
                        tracking = self._track(payload)
                    event = to_event(payload, mode=mode, origin=origin)
                    if event is None:
                        continue
                    if isinstance(event, TextDelta | TextReplace):
                        self.texts += 1
                    elif isinstance(event, AnswerEnd):
                        self._check_stale(event, payload)
                        yield event
                        await _drain(batches)
                        return
                    yield event
        except httpx.TransportError as exc:
            raise DifyStreamCut(f"stream broken: {type(exc).__name__}", code="stream_cut") from exc
        finally:
            await batches.aclose()

    async def _first_data(
        self, batches: AsyncGenerator[list[Frame], None], conversation_id: str
    ) -> list[Frame]:
        """Frames up to the first data frame; if that takes too long, check the conversation.

        Dify 1.13.2 answers a Chatflow stream for an unknown or deleted conversation with HTTP 200,
        one ping, then silence until its 300 s idle timeout (captures: err_unknown_conversation);
        GET /messages for that conversation answers 404, which is how we tell it from a slow app.
        """
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + self._client.first_event_timeout
        seen: list[Frame] = []
        while True:
            waiter = asyncio.ensure_future(_next(batches))
            try:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({waiter}, timeout=timeout)
                if not done:
                    deadline = None  # check once; a live conversation may simply be slow
                    user = self._request.user
                    if not await self._client.conversation_exists(conversation_id, user=user):
                        raise ConversationNotFound(
                            "conversation unknown to Dify (silent stream)", code="not_found"
                        )
                batch = await waiter
            finally:
                await _cancel(waiter)
            if batch is None:
                return seen
            seen.extend(batch)
            if any(data for _, data in batch):
                return seen

    def _track(self, payload: dict[str, Any]) -> bool:
        """Remember the ids as they appear; False once all three are known."""
        for name in ("task_id", "conversation_id", "message_id"):
            value = payload.get(name)
            if value and isinstance(value, str) and not getattr(self, name):
                setattr(self, name, value)
        return not (self.task_id and self.conversation_id and self.message_id)

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


async def _drain(batches: AsyncIterator[list[Frame]]) -> None:
    """Read on to the end of the response, so the connection can go back to the pool.

    It reads on from the frames being read: a second ``aiter_bytes`` on the response would raise
    httpx.StreamConsumed. What comes after the closing event, a cut included, no longer concerns
    the answer."""
    with contextlib.suppress(Exception):  # TimeoutError included
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in batches:
                pass


async def _next(batches: AsyncIterator[list[Frame]]) -> list[Frame] | None:
    return await anext(batches, None)


async def _cancel(task: asyncio.Future[Any]) -> None:
    if not task.done():
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def _chain(
    first: list[Frame], rest: AsyncGenerator[list[Frame], None]
) -> AsyncGenerator[list[Frame], None]:
    """The frames already read, then the rest of the stream (one hop per batch, not per event)."""
    try:
        if first:
            yield first
        async for batch in rest:
            yield batch
    finally:
        await rest.aclose()
