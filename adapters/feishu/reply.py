"""``FeishuReply``: one answer in Feishu, in a CardKit streaming card or a PATCHed card.

CardKit first (``FEISHU_STREAMING_CARDS``): a card entity with ``streaming_mode`` is created
and sent by ``card_id``; the answer streams into its ``answer`` element (``PUT …/content``, the
whole text each time, a larger ``sequence`` each call); at the end the settings call closes
streaming and the card is replaced by the final one with its buttons. When CardKit is refused
(no permission, a Lark tenant without it) the answer goes in an interactive card updated by
``PATCH /im/v1/messages/{id}`` instead (5 a second per message at most: the reply edits at most
twice a second). Streaming closes itself after 10 minutes (``200850``/``300309``): the reply
opens it again. Answers past one card continue in more cards; the message ids are saved in the
journal, so a replica that takes the answer over edits the same card. Every message is sent
with a ``uuid`` made of the journal entry: Feishu sends one message per uuid within an hour, so
a retried or taken-over send never shows twice.

A Dify form (``show_form``) ends the answer's card and comes in a card of its own under it
(``cards.form_card``), which the adapter greys once the form is answered; the rest of the run
goes on in the answer's card (rebuilt from the saved state: streaming is opened again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from adapters.feishu.actions import ask_value, feedback_value, stop_value
from adapters.feishu.api import FeishuAPI, FeishuAPIError
from adapters.feishu.cards import (
    ANSWER,
    Button,
    Card,
    card,
    form_card,
    streaming_off,
    summary_of,
)
from adapters.feishu.files import send_files
from adapters.feishu.markdown import to_card_markdown
from bot.contract import FormView, ReplyCapabilities
from bot.delivery.scheduler import Priority
from bot.files.answers import AnswerFiles, LinkedFile, OutFile, fallback_links, without
from bot.models import Answer, ConversationKey
from bot.ops.effort import best_effort
from bot.text import split_text, utf8_length

log = logging.getLogger(__name__)

MAX_BYTES = 24_000  # of answer text per card: a card body is at most 30 KB with its JSON
STREAM_CLOSED = frozenset({"200850", "300309"})  # timed out after 10 minutes / closed
SEQUENCE_BEHIND = "300317"
Suggest = Callable[[Answer], Awaitable[list[str]]]
Save = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Place:
    """Where an answer goes: a group question is answered in a thread under it."""

    chat_id: str
    reply_to: str
    in_thread: bool
    key: ConversationKey


@dataclass(frozen=True, slots=True)
class Labels:
    thinking: str
    stop: str
    like: str
    dislike: str
    suggested: str


class CardKitSwitch:
    """Whether CardKit is worth trying: off for this process once Feishu refused a card."""

    def __init__(self, on: bool) -> None:
        self.on = on

    def refused(self, exc: FeishuAPIError) -> None:
        log.warning("CardKit refused (%s); answers use PATCHed cards from now on", exc.code)
        self.on = False


class FeishuReply:
    """Implements ``bot.contract.Reply`` for Feishu."""

    capabilities = ReplyCapabilities(
        can_edit=True, max_length=MAX_BYTES, measure="utf8", min_interval=0.5
    )

    def __init__(
        self,
        api: FeishuAPI,
        place: Place,
        *,
        labels: Labels,
        cardkit: CardKitSwitch,
        uuid: str,
        save: Save,
        state: dict[str, Any] | None = None,
        files: AnswerFiles | None = None,
        suggest: Suggest | None = None,
        feedback: bool = True,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._api = api
        self._place = place
        self._labels = labels
        self._cardkit = cardkit
        self._uuid = uuid
        self._save = save
        self._files = files
        self._suggest = suggest
        self._feedback = feedback
        self._wall = wall
        state = dict(state or {})
        self._message_id = str(state.get("message_id") or "")
        self._card_id = str(state.get("card_id") or "")
        self._created_at = float(state.get("created_at") or wall())
        self._sequence = 0
        self._text_shown = bool(self._message_id)  # a taken-over card shows text already

    # ---- the Reply protocol -------------------------------------------------------------------

    async def start(self) -> None:
        if self._message_id:  # taken over: the card is there already
            return
        thinking = self._labels.thinking
        first = card(thinking, buttons=self._stop(), streaming=True, summary=thinking)
        self._card_id = await self._create(first) if self._cardkit.on else ""
        if self._card_id:
            content = {"type": "card", "data": {"card_id": self._card_id}}
            self._message_id = await self._post("interactive", content, "0", Priority.SIGN_OF_LIFE)
        else:
            first["config"]["streaming_mode"] = False
            self._message_id = await self._post("interactive", first, "0", Priority.SIGN_OF_LIFE)
        await self._keep()

    async def _create(self, first: Card) -> str:
        """A CardKit card entity, or "" to use a PATCHed card: for good when Feishu refuses
        CardKit (no permission, a region without it), for this answer when it just failed."""
        try:
            return await self._api.create_card(first)
        except FeishuAPIError as exc:
            if exc.status in (400, 403):
                self._cardkit.refused(exc)
            else:
                log.info("CardKit card not created (%s); this answer uses a PATCHed card", exc)
            return ""

    async def update(self, text: str) -> None:
        shown = to_card_markdown(_head(text))
        if not self._message_id or not shown:
            return
        self._text_shown = True
        if self._card_id:
            await self._stream(shown)
        else:
            await self._api.patch(self._message_id, card(shown, buttons=self._stop()),
                                  priority=Priority.INTERIM)  # fmt: skip

    async def status(self, text: str) -> None:
        """A tool or workflow step ("🔧 web_search…") takes "Thinking…"'s place until the
        answer's text begins; then the growing text shows progress (a card has no status
        line, and a line under a streaming text would redraw it at every change)."""
        if self._text_shown or not self._message_id:
            return
        line = to_card_markdown(text or self._labels.thinking)
        if self._card_id:
            await self._stream(line)
        else:
            await self._api.patch(self._message_id, card(line, buttons=self._stop()),
                                  priority=Priority.INTERIM)  # fmt: skip

    async def finish(self, text: str, answer: Answer) -> None:
        fetched: list[OutFile] = []
        failed: list[LinkedFile] = []
        if self._files is not None:
            with best_effort("fetch the answer's files (their links stay)", log):
                linked = self._files.find(text, answer)
                fetched, failed = await self._files.fetch_all(linked) if linked else ([], [])
                text = without(text, [f.source for f in fetched]) or ", ".join(
                    f.filename for f in fetched
                )
        buttons = self._feedback_buttons(answer)
        await self._final(text, buttons=buttons, summary=summary_of(text))
        unsent = await send_files(self._api, fetched, self._send_native) if fetched else []
        links = fallback_links(text, failed) + [f"[{f.filename}]({f.source.url})" for f in unsent]
        if links:
            await self._post("interactive", card(to_card_markdown("\n".join(links))), "links")
        if self._suggest is not None and answer.message_id:
            with best_effort("offer suggested questions", log):
                await self._offer(text, answer, buttons)

    async def fail(self, text: str, notice: str) -> None:
        await self._final(text, buttons=[], note=notice, summary=summary_of(text or notice))

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the answer so far ends its card (Stop gone), and the form
        follows in a card of its own with its inputs and buttons (``cards.form_card``)."""
        title = form.form.node_title
        shown = text if text.strip() else title or "…"  # not "Thinking…": it waits for a person
        await self._final(shown, buttons=[], summary=summary_of(shown))
        form_shown = form_card(form, thread=self._place.in_thread)
        await self._post("interactive", form_shown, f"f{form.ref[:8]}")  # a uuid is 50 at most

    # ---- the card -----------------------------------------------------------------------------

    async def _final(self, text: str, *, buttons: list[Button], summary: str,
                     note: str = "") -> None:  # fmt: skip
        parts = split_text(text, MAX_BYTES, measure=utf8_length) if text.strip() else [""]
        last = len(parts) - 1
        for index, part in enumerate(parts):
            shown = to_card_markdown(part) or (" " if note else self._labels.thinking)
            final = card(shown, buttons=buttons if index == last else [],
                         note=note if index == last else "", summary=summary)  # fmt: skip
            if index == 0:
                await self._replace(final, summary)
            else:
                await self._post("interactive", final, str(index))

    async def _replace(self, final: Card, summary: str) -> None:
        """The first card becomes ``final``: streaming closed, the whole card replaced."""
        if not self._message_id:
            self._message_id = await self._post("interactive", final, "0")
            await self._keep()
        elif self._card_id:
            await self._settings(streaming_off(summary))
            await self._update(final)
        else:
            await self._api.patch(self._message_id, final)

    async def _offer(self, text: str, answer: Answer, buttons: list[Button]) -> None:
        """Dify's suggested questions come from a slower call: the card gets them after (or,
        when the answer took several cards, a small card of their own follows)."""
        assert self._suggest is not None
        questions = await self._suggest(answer)
        if not questions:
            return
        asks = [Button(q, ask_value(q, self._place.key)) for q in questions[:3]]
        label = self._labels.suggested
        parts = split_text(text, MAX_BYTES, measure=utf8_length) if text.strip() else [" "]
        if len(parts) > 1:
            await self._post("interactive", card(to_card_markdown(label), buttons=asks), "ask")
            return
        final = card(to_card_markdown(parts[0]) or " ", buttons=buttons, asks=asks,
                     asks_label=label, summary=summary_of(text))  # fmt: skip
        if self._card_id:
            await self._update(final)
        else:
            await self._api.patch(self._message_id, final)

    async def _stream(self, shown: str) -> None:
        try:
            await self._content(shown)
        except FeishuAPIError as exc:
            if exc.code not in STREAM_CLOSED:
                raise
            # Streaming closes itself 10 minutes after it opened: open it again.
            await self._settings({"config": {"streaming_mode": True}})
            await self._content(shown)

    async def _sequenced(self, operation: Callable[[int], Awaitable[None]]) -> None:
        """One CardKit operation with the next ``sequence``. A replica that took the answer
        over does not know the last one: sequences count milliseconds since the card was made,
        and one refused as behind is retried past it."""
        for _ in range(2):
            self._sequence = max(self._sequence + 1, int((self._wall() - self._created_at) * 1000))
            try:
                await operation(self._sequence)
                return
            except FeishuAPIError as exc:
                if exc.code != SEQUENCE_BEHIND:
                    raise
                self._sequence += 10_000

    async def _content(self, shown: str) -> None:
        card_id = self._card_id
        await self._sequenced(
            lambda n: self._api.card_content(card_id, ANSWER, shown, n, priority=Priority.INTERIM)
        )

    async def _settings(self, settings: dict[str, Any]) -> None:
        card_id = self._card_id
        await self._sequenced(lambda n: self._api.card_settings(card_id, settings, n))

    async def _update(self, final: Card) -> None:
        card_id = self._card_id
        await self._sequenced(lambda n: self._api.card_update(card_id, final, n))

    # ---- sending ------------------------------------------------------------------------------

    async def _post(self, msg_type: str, content: dict[str, Any], part: str,
                    priority: Priority = Priority.FINAL) -> str:  # fmt: skip
        place, uuid = self._place, f"{self._uuid}-{part}"
        if place.in_thread:
            return await self._api.reply(place.reply_to, msg_type, content, in_thread=True,
                                         uuid=uuid, priority=priority)  # fmt: skip
        return await self._api.send(place.chat_id, msg_type, content, uuid=uuid,
                                    priority=priority)  # fmt: skip

    async def _send_native(self, msg_type: str, content: dict[str, Any], part: str) -> str:
        return await self._post(msg_type, content, part)

    async def _keep(self) -> None:
        state = {"message_id": self._message_id, "card_id": self._card_id,
                 "created_at": self._created_at}  # fmt: skip
        with best_effort("save the reply's state (a taker would post anew)", log):
            await self._save(state)

    def _stop(self) -> list[Button]:
        return [Button(self._labels.stop, stop_value(self._place.key), "danger")]

    def _feedback_buttons(self, answer: Answer) -> list[Button]:
        if not self._feedback or not answer.message_id or not answer.dify_user:
            return []
        like = feedback_value(answer.app, answer.message_id, answer.dify_user, "like")
        dislike = feedback_value(answer.app, answer.message_id, answer.dify_user, "dislike")
        return [
            Button(f"👍 {self._labels.like}", like),
            Button(f"👎 {self._labels.dislike}", dislike),
        ]


def _head(text: str) -> str:
    return split_text(text, MAX_BYTES, measure=utf8_length)[0] if text.strip() else ""
