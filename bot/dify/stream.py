"""One streamed Dify answer: SSE frames in, typed events out, stale conversations detected."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from logging import DEBUG
from typing import TYPE_CHECKING, Any

import httpx
import orjson

from bot.dify.events import to_event
from bot.dify.sse import Frame, iter_frames
from bot.errors import ConversationNotFound, DifyProtocolError, DifyStreamCut
from bot.models import AnswerEnd, AnswerEvent, FormRequest, TextDelta, TextReplace
from bot.ops.effort import best_effort, cancelled

if TYPE_CHECKING:
    from bot.dify.client import AnswerRequest, DifyClient

log = logging.getLogger(__name__)

# After the closing event Dify may still send tts_message_end or workflow_finished; reading them
# lets the connection go back to the pool, but never for longer than this.
DRAIN_SECONDS = 2.0
# The ids a stream names, by app mode: tracking stops once all are known.
_IDS = {
    "advanced-chat": ("task_id", "conversation_id", "message_id", "workflow_run_id"),
    "workflow": ("task_id", "workflow_run_id"),
}
_CHAT_IDS = ("task_id", "conversation_id", "message_id")


class AnswerStream:
    """Iterate to get events; ``task_id``/``conversation_id``/``message_id`` and
    ``workflow_run_id`` fill in as they come.

    The stream ends at the first closing event (``message_end`` or ``workflow_finished``, or
    ``workflow_paused``: a run waiting for a person), or when the connection closes. A paused end
    carries the forms (``FormRequest``) and ends at once: Dify's body goes on for another second
    with nothing in it. A broken connection raises DifyStreamCut.

    ``follow`` (``DifyClient.run_events``) reads a run's event stream instead: see ``Follow``.
    """

    def __init__(
        self,
        client: DifyClient,
        response: httpx.Response,
        request: AnswerRequest | None = None,
        *,
        follow: Follow | None = None,
    ) -> None:
        self._client = client
        self._response = response
        self._request = request
        self._follow = follow
        self._ids = _IDS.get(client.mode, _CHAT_IDS)
        self.task_id = ""
        self.conversation_id = ""
        self.message_id = ""
        # Newer Dify names the run in a header, so it is known even if the socket drops before
        # workflow_started; 1.14.1 does not send it (hitl_chatflow_pause.meta.json).
        self.workflow_run_id = response.headers.get("x-workflow-run-id", "")
        self.forms: dict[str, FormRequest] = {}  # human_input_required seen, by form id
        self.pings = 0
        self.texts = 0
        # After the closing event: the frames still to come, for the client to drain after the
        # caller is done (``rest``), so the answer never waits for the end of the body.
        self.rest: AsyncGenerator[list[Frame], None] | None = None

    async def close(self) -> None:
        """Close the connection (a followed run's stream: ``DifyClient.subscribe``)."""
        await self._response.aclose()

    def __aiter__(self) -> AsyncGenerator[AnswerEvent, None]:
        return self._events()

    async def _events(self) -> AsyncGenerator[AnswerEvent, None]:
        mode, origin, follow = self._client.mode, self._client.origin, self._follow
        tracking = True
        batches = iter_frames(self._response.aiter_bytes())
        try:
            if self._request is not None and (conversation_id := self._request.conversation_id):
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
                        if follow is not None and not follow.shows(event, payload):
                            continue
                    elif isinstance(event, AnswerEnd):
                        closing, done = self._closing(event, payload)
                        for item in closing:
                            yield item
                        if done:
                            # The body goes on after the end (Dify's relay closes it ~1 s after
                            # workflow_finished; tts_message_end may trail): the client drains
                            # it once the caller is done. A paused run's body has nothing more,
                            # and a followed run's may never end (continue_on_pause): closed.
                            if follow is None and not event.paused:
                                self.rest, batches = batches, _nothing()
                            return
                        continue
                    elif isinstance(event, FormRequest):
                        self.forms[event.form_id or event.token] = event
                    yield event
            if follow is not None and follow.held is not None:
                yield follow.held  # the body ended after message_end, before workflow_finished
        except httpx.TransportError as exc:
            raise DifyStreamCut(f"stream broken: {type(exc).__name__}", code="stream_cut") from exc
        finally:
            await batches.aclose()

    def _closing(self, end: AnswerEnd, payload: dict[str, Any]) -> tuple[list[AnswerEvent], bool]:
        """What a closing event yields, and whether the stream ends with it."""
        self._check_stale(end, payload)
        forms = end.forms
        if end.paused:  # the forms as human_input_required described them, display_in_ui too
            forms = tuple(self.forms.get(f.form_id, f) for f in forms) or tuple(self.forms.values())
        end = dataclasses.replace(
            end, workflow_run_id=end.workflow_run_id or self.workflow_run_id, forms=forms
        )
        if self._follow is None:
            return [end], True
        chatflow = self._client.mode == "advanced-chat"
        return self._follow.closing(end, payload, chatflow=chatflow)

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
                    assert self._request is not None  # a conversation to check means a request
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
        """Remember the ids as they appear; False once all the mode's ids are known."""
        for name in self._ids:
            value = payload.get(name)
            if value and isinstance(value, str) and not getattr(self, name):
                setattr(self, name, value)
        return not all(getattr(self, name) for name in self._ids)

    def _check_stale(self, end: AnswerEnd, payload: dict[str, Any]) -> None:
        """A Chatflow run for a stale conversation fails at once, without conversation ids
        (dify-api.md §6.3): report it as ConversationNotFound so the caller retries fresh."""
        if (
            end.status == "failed"
            and self._request is not None
            and self._request.conversation_id
            and not payload.get("conversation_id")
            and not self.texts
        ):
            raise ConversationNotFound(end.error or "conversation not found", code="not_found")


async def drain(rest: AsyncGenerator[list[Frame], None]) -> None:
    """Read on to the end of the response after its closing event, for at most DRAIN_SECONDS,
    so the connection can go back to the pool. It reads on from the frames being read (a second
    ``aiter_bytes`` on the response would raise httpx.StreamConsumed); what comes after the end,
    a cut included, no longer concerns the answer."""
    with best_effort("read the rest of a finished answer's response", log, level=DEBUG):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for _ in rest:
                pass
    await rest.aclose()


async def _nothing() -> AsyncGenerator[list[Frame], None]:
    """In place of the frames handed over to the drain: there is nothing left to close."""
    return
    yield  # an async generator


class Follow:
    """How ``run_events`` reads a run's stream so a caller can continue the reply it shows.

    ``known`` is the text the caller already shows. The run's end is ``workflow_finished`` (a
    ``message_end`` before it is held and merged in), or ``workflow_paused`` unless
    ``keep_open`` (``continue_on_pause``): then the paused end is yielded and the stream goes on.
    A Chatflow's finished answer is also yielded as a ``TextReplace`` of ``outputs.answer`` when
    it differs from what was shown: the events published before the subscription are lost, and
    a run that had already finished sends nothing but that one event.
    """

    def __init__(self, *, known: str = "", keep_open: bool = False) -> None:
        self.known = known
        self.keep_open = keep_open
        self.held: AnswerEnd | None = None

    def shows(self, event: TextDelta | TextReplace, payload: dict[str, Any]) -> bool:
        """False for a snapshot's stale answer: it replays the message row, which Dify writes
        only at pauses and at the end (``reason: ""``), so mid-run it lags what is shown."""
        if isinstance(event, TextDelta):
            self.known += event.text
            return True
        if payload.get("reason") == "" and not event.text.startswith(self.known):
            return False
        self.known = event.text
        return True

    def closing(
        self, end: AnswerEnd, payload: dict[str, Any], *, chatflow: bool
    ) -> tuple[list[AnswerEvent], bool]:
        if payload.get("event") == "message_end":
            self.held = end  # workflow_finished follows at once, with the status and outputs
            return [], False
        if end.paused:
            return [end], not self.keep_open
        held, self.held = self.held, None
        if held is not None:
            end = dataclasses.replace(
                end,
                message_id=end.message_id or held.message_id,
                conversation_id=end.conversation_id or held.conversation_id,
                usage=held.usage,
                retriever_resources=held.retriever_resources,
                files=end.files or held.files,
            )
        answer = end.outputs.get("answer")
        if not chatflow or not isinstance(answer, str) or answer == self.known:
            return [end], True
        if end.status != "succeeded" and not answer.startswith(self.known):
            return [end], True  # never rewind a stopped or failed answer
        self.known = answer
        return [TextReplace(answer), end], True


async def _next(batches: AsyncIterator[list[Frame]]) -> list[Frame] | None:
    return await anext(batches, None)


async def _cancel(task: asyncio.Future[Any]) -> None:
    await cancelled(task)


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
