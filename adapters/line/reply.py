"""One answer on LINE: the loading animation while it is written, then the whole answer, once.

LINE cannot edit a message, so the answer goes out when it is done: by the reply API with the
event's reply token while that is fresh (free; single use, about a minute), otherwise — or when
LINE refuses the token — by the push API (billed per message) to the user, group or room.
Messages go 5 per call; the first call may be the reply, every later one is a push.

Exactly once: the journal entry's reply state counts the messages delivered and holds the retry
key of a push in flight, saved before the push is sent. A push LINE may have carried out (no
answer, 5xx) is retried with the same ``X-Line-Retry-Key`` — by this replica or one that takes
the entry over — and LINE answers a repeat with 409 instead of sending it again. A reply has no
such key: one whose answer is lost is taken as not delivered and pushed (a possible duplicate is
better than a lost answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from adapters.background import Background
from adapters.line.api import LineAPI, LineAPIError
from adapters.line.inbound import Ask, Rate
from adapters.line.messages import (
    MAX_TEXT,
    Button,
    Message,
    batches,
    form_buttons,
    image_message,
    text_messages,
    with_note,
    with_quick_reply,
)
from adapters.plaintext import to_plain_text
from bot.contract import FormView, ReplyCapabilities
from bot.files.answers import LinkedFile, mentions, without
from bot.models import Answer
from bot.ops.effort import best_effort, cancelled

log = logging.getLogger(__name__)

State = dict[str, Any]
LOADING_GRACE = 2.0  # seconds the answer waits for a loading call in flight
Suggest = Callable[[Answer], Awaitable[list[str]]]


@dataclass(frozen=True, slots=True)
class Target:
    """Where the answer goes (the journal entry's ``where``): ``chat`` a user, group or room
    id, ``kind`` which of those, the event's ``reply_token`` and when it ``arrived`` (Unix s)."""

    chat: str
    kind: str
    reply_token: str = ""
    arrived: float = 0.0

    @classmethod
    def of(cls, where: Mapping[str, Any]) -> Target:
        return cls(
            chat=str(where["chat"]),
            kind=str(where.get("kind") or "user"),
            reply_token=str(where.get("reply_token") or ""),
            arrived=float(where.get("arrived") or 0.0),
        )


@dataclass(slots=True)
class Progress:
    """The reply state: messages ``sent`` so far, ``pushed`` ones among them (billed), and the
    retry ``key`` of a push that may be in flight; ``done`` once the whole answer went."""

    sent: int = 0
    pushed: int = 0
    key: str = ""
    done: bool = False

    @classmethod
    def of(cls, state: Mapping[str, Any] | None) -> Progress:
        state = state or {}
        return cls(
            sent=int(state.get("sent", 0)),
            pushed=int(state.get("pushed", 0)),
            key=str(state.get("key", "")),
            done=bool(state.get("done", False)),
        )


@dataclass(frozen=True, slots=True)
class Labels:
    like: str
    dislike: str
    cut: str


@dataclass(frozen=True, slots=True)
class ReplyOptions:
    reply_window: float = 50.0
    push_limit: int = 10
    loading_seconds: int = 20
    loading_every: float = 0.0  # seconds between renewals; 0: 3 s before it runs out
    feedback: bool = True
    suggestions_wait: float = 3.0


@dataclass
class LineReply:
    """``bot.contract.Reply`` for one LINE answer."""

    api: LineAPI
    target: Target
    save: Callable[[State], Awaitable[None]]
    labels: Labels
    background: Background
    options: ReplyOptions = field(default_factory=ReplyOptions)
    progress: Progress = field(default_factory=Progress)
    suggest: Suggest | None = None
    clock: Callable[[], float] = time.time
    capabilities: ReplyCapabilities = field(
        default=ReplyCapabilities(can_edit=False, max_length=MAX_TEXT)
    )
    _loading: asyncio.Task[None] | None = None
    _answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """The loading animation, 1:1 chats only (LINE refuses it for groups and rooms)."""
        if self.target.kind == "user" and self.progress.sent == 0 and self._loading is None:
            self._loading = self.background.spawn(self._keep_loading())

    async def update(self, text: str) -> None:
        """Never called (``can_edit`` is False)."""

    async def status(self, text: str) -> None:
        """LINE has no status line; the animation runs until the answer arrives."""

    async def finish(self, text: str, answer: Answer) -> None:
        text, images = _images(text, answer)
        messages = text_messages(to_plain_text(text)) + images
        if not messages:
            messages = text_messages(text) or [{"type": "text", "text": "…"}]
        buttons = await self._buttons(answer)
        await self._deliver(messages, buttons)

    async def fail(self, text: str, notice: str) -> None:
        shown = to_plain_text(text)
        await self._deliver(text_messages(f"{shown}\n\n{notice}" if shown else notice), [])

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the answer so far and the form's text, delivered like
        an answer (reply while the token is fresh, else push, once), its last message carrying
        one postback quick reply per action. A tap answers the form; LINE cannot edit, so the
        run goes on in a new message, by the tap's own reply token."""
        buttons = form_buttons(form)
        if len(buttons) < len(form.form.actions):
            log.warning("form %s: %d of its %d actions offered on LINE (13 at most)",
                        form.ref, len(buttons), len(form.form.actions))  # fmt: skip
        shown = "\n\n".join(part for part in (text, form.text) if part.strip())
        messages = text_messages(to_plain_text(shown)) or [{"type": "text", "text": "…"}]
        await self._deliver(messages, buttons)

    # ---- the loading animation --------------------------------------------------------------

    async def _keep_loading(self) -> None:
        """Asked again shortly before it runs out (a message from the bot ends it). Stopped
        between calls, never in the middle of one."""
        seconds = self.options.loading_seconds
        every = self.options.loading_every or max(seconds - 3.0, seconds * 0.6)
        while not self._answered.is_set():
            with best_effort("show the loading animation", log, level=logging.INFO):
                await self.api.show_loading(self.target.chat, seconds)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(every):
                    await self._answered.wait()

    async def _stop_loading(self) -> None:
        """Lets a call in flight end (cancelling it would tear its connection down), but holds
        the answer back for it no longer than ``LOADING_GRACE``."""
        task, self._loading = self._loading, None
        self._answered.set()
        if task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), LOADING_GRACE)
            await cancelled(task)

    # ---- delivery -------------------------------------------------------------------------

    async def _deliver(self, messages: list[Message], buttons: list[Button]) -> None:
        await self._stop_loading()
        progress = self.progress
        if progress.done:
            return  # delivered already (this entry was taken over after it was sent)
        if progress.sent == 0 and self._reply_is_fresh():
            plan = self._fit(messages, buttons, free=5)
            replied = bool(plan) and await self._reply(plan[:5])
            rest = plan[5:] if replied else self._fit(messages, buttons, free=0)
        else:
            rest = self._fit(messages, buttons, free=progress.sent)[progress.sent :]
        for batch in batches(rest):
            if not await self._push(batch):
                return
        progress.done = True
        await self._save()

    def _fit(self, messages: list[Message], buttons: list[Button], *, free: int) -> list[Message]:
        """The messages that fit: ``free`` ones (a fresh reply, or messages already sent) and
        what the push budget allows; an answer cut short says so in its last message, which
        carries the buttons."""
        allowed = free + self.options.push_limit - self.progress.pushed
        kept = list(messages[: max(allowed, 0)])
        if len(messages) > len(kept):
            log.info("answer cut to %d of %d LINE messages (LINE_PUSH_LIMIT)",
                     len(kept), len(messages))  # fmt: skip
            if not kept:
                return []
            kept[-1] = with_note(kept[-1], self.labels.cut)
        if buttons and kept:
            kept[-1] = with_quick_reply(kept[-1], buttons)
        return kept

    def _reply_is_fresh(self) -> bool:
        token, arrived = self.target.reply_token, self.target.arrived
        return bool(token) and self.clock() - arrived < self.options.reply_window

    async def _reply(self, batch: list[Message]) -> bool:
        try:
            await self.api.reply(self.target.reply_token, batch)
        except LineAPIError as exc:  # expired or used token, or no answer: push instead
            log.info("LINE reply refused (%s, %s): pushing the answer", exc.status, exc.message)
            return False
        self.progress.sent += len(batch)
        await self._save()
        return True

    async def _push(self, batch: list[Message]) -> bool:
        if not self.progress.key:
            self.progress.key = str(uuid.uuid4())
            await self._save()  # before sending: whoever retries it uses the same key
        try:
            await self.api.push(self.target.chat, batch, retry_key=self.progress.key)
        except LineAPIError as exc:
            log.error("LINE push refused (%s): %s", exc.status, exc.message)
            return False
        self.progress.sent += len(batch)
        self.progress.pushed += len(batch)
        self.progress.key = ""
        await self._save()
        return True

    async def _save(self) -> None:
        with best_effort("save the LINE reply state", log):
            await self.save(asdict(self.progress))

    # ---- quick replies --------------------------------------------------------------------

    async def _buttons(self, answer: Answer) -> list[Button]:
        """Suggested questions, then 👍/👎. Dify's suggestions are a separate (LLM) call: they
        are waited for a few seconds at most, since they must ride on the answer's message."""
        buttons: list[Button] = []
        if self.suggest is not None and answer.message_id and self.options.suggestions_wait > 0:
            with best_effort("get suggested questions", log, level=logging.INFO):
                async with asyncio.timeout(self.options.suggestions_wait):
                    questions = await self.suggest(answer)
                buttons += [Button(q, Ask(q)) for q in questions if q.strip()]
        if self.options.feedback and answer.message_id and answer.dify_user:
            asker, app = answer.dify_user, answer.app
            buttons += [
                Button(self.labels.like, Rate("like", answer.message_id, app, asker)),
                Button(self.labels.dislike, Rate("dislike", answer.message_id, app, asker)),
            ]
        return buttons[-13:]


def _images(text: str, answer: Answer) -> tuple[str, list[Message]]:
    """Images of the answer as image messages (LINE fetches them over HTTPS), their Markdown
    taken out of the text; any other file, or an image LINE could not fetch, keeps its link
    (one the text does not show yet is added to it)."""
    found: dict[str, LinkedFile] = {}
    for mention in mentions(text):
        if mention.image and image_message(mention.href) is not None:
            entry = found.setdefault(mention.href, LinkedFile(mention.href, mention.label))
            entry.mentions.append(mention)
    links: list[str] = []
    for out in answer.files:
        if out.type == "image" and image_message(out.url) is not None:
            found.setdefault(out.url, LinkedFile(out.url, out.filename))
        elif out.url not in text:
            links.append(f"{out.filename or out.type}: {out.url}")
    images = [m for url in found if (m := image_message(url)) is not None]
    shown = without(text, found.values()) if found else text
    return "\n\n".join([shown, *links]), images
