"""A DingTalk answer: streamed into an AI card when a template is set, else robot Markdown
messages (a sign of life, then the answer), through the callback's session webhook while it
lives and the robot's OpenAPI send after.

AI card (docs "AI 卡片流式更新", dingtalk-stream's ``AICardReplier``): ``createAndDeliver`` puts
a card from the template into the chat's open space (``dtv1.card//IM_GROUP.<cid>`` or
``dtv1.card//IM_ROBOT.<staffId>``), then each ``PUT /v1.0/card/streaming`` carries the whole text
so far (``isFull``) under a fresh ``guid`` (a repeated guid is taken for a retry and dropped), the
last one ``isFinalize`` (``isError`` on failure). A sender from another organisation has no
staff id: no card can reach them, so they get messages.

Robot messages cannot be edited: the answer goes once, at the end, split under the session
webhook's 20 000-byte body limit. The reply saves what it has shown (the card's id, the parts
sent) in the journal, so a replica that takes over streams into the same card or sends only the
parts still missing.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.dingtalk.api import DingTalkAPI, DingTalkAPIError, ForeignWebhook
from adapters.dingtalk.markdown import to_dingtalk_markdown
from adapters.dingtalk.offers import Offers, Show
from bot.contract import FormView, ReplyCapabilities
from bot.delivery.scheduler import Priority
from bot.models import Answer
from bot.ops.effort import best_effort
from bot.stores import State
from bot.text import split_text, utf8_length

log = logging.getLogger(__name__)

PROCESSING, FINISHED, FAILED = "1", "3", "5"  # AI card flowStatus (dingtalk-stream AICardStatus)
MAX_MARKDOWN = 18_000  # bytes of one message's text: the body limit is 20 000 with the JSON
SESSION_MARGIN = 60.0  # seconds: a session webhook this close to expiry is not used
Save = Callable[[State], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Chat:
    """Where an answer goes, from the journal entry's ``where``."""

    group: bool
    conversation_id: str
    staff_id: str
    session_webhook: str
    session_expires: float

    @classmethod
    def of(cls, where: Mapping[str, Any]) -> Chat:
        return cls(
            group=bool(where.get("group")),
            conversation_id=str(where.get("conversation_id") or ""),
            staff_id=str(where.get("staff_id") or ""),
            session_webhook=str(where.get("session_webhook") or ""),
            session_expires=float(where.get("session_expires") or 0.0),
        )

    @property
    def open_space(self) -> str:
        """The card's open space; "" when no card can be delivered here."""
        if self.group:
            return f"dtv1.card//IM_GROUP.{self.conversation_id}"
        return f"dtv1.card//IM_ROBOT.{self.staff_id}" if self.staff_id else ""


class RobotMessages:
    """Sends robot messages into one chat: the session webhook while it lives, else OpenAPI."""

    def __init__(
        self, api: DingTalkAPI, chat: Chat, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._api = api
        self._chat = chat
        self._clock = clock

    async def markdown(self, title: str, text: str) -> None:
        await self._send("markdown", {"title": title, "text": text})

    async def text(self, content: str) -> None:
        await self._send("text", {"content": content})

    async def _send(self, kind: str, param: dict[str, str]) -> None:
        chat = self._chat
        if chat.session_webhook and chat.session_expires - SESSION_MARGIN > self._clock():
            try:
                await self._api.send_session(chat.session_webhook, {"msgtype": kind, kind: param})
                return
            except ForeignWebhook:
                log.warning("session webhook not on DINGTALK_OAPI_BASE: not called")
            except DingTalkAPIError as exc:
                if not (exc.session_gone or exc.throttled):
                    raise
                log.info("session webhook refused (%s); the robot's OpenAPI send instead", exc.code)
        await self._openapi(kind, param)

    async def _openapi(self, kind: str, param: dict[str, str]) -> None:
        """The robot's own send (docs "机器人发送群聊消息", "批量发送...机器人消息")."""
        chat = self._chat
        msg_key = "sampleMarkdown" if kind == "markdown" else "sampleText"
        body: dict[str, Any] = {
            "robotCode": self._api.client_id,
            "msgKey": msg_key,
            "msgParam": orjson.dumps(param).decode(),  # a JSON string, not an object
        }
        if chat.group:
            group = body | {"openConversationId": chat.conversation_id}
            await self._api.call("POST", "/v1.0/robot/groupMessages/send", group)
        elif chat.staff_id:
            await self._api.call(
                "POST", "/v1.0/robot/oToMessages/batchSend", body | {"userIds": [chat.staff_id]}
            )
        else:
            log.error("answer lost: session webhook expired and the sender has no staff id")


def title_of(text: str, fallback: str) -> str:
    """What the chat list and the notification show: the answer's first words."""
    first = next((line.strip("#>*- ") for line in text.splitlines() if line.strip()), "")
    return (first[:24] + "…" if len(first) > 24 else first) or fallback


class MessageReply:
    """The answer as robot Markdown messages, sent once it is complete."""

    capabilities = ReplyCapabilities(
        can_edit=False, max_length=MAX_MARKDOWN, measure="utf8", min_interval=1.0
    )

    def __init__(
        self,
        messages: RobotMessages,
        save: Save,
        *,
        state: State,
        thinking: str,
        title: str,
        offers: Offers | None = None,
        choose: str = "",
    ) -> None:
        self._messages = messages
        self._choose = choose
        self._offers = offers
        self._save = save
        self._state = state  # one state per entry, shared by a card and its fallback
        self._thinking = thinking
        self._title = title

    async def start(self) -> None:
        if self._state.get("started") or not self._thinking:
            return
        self._state["started"] = True
        await self._save(self._state)
        await self._messages.text(self._thinking)

    async def update(self, text: str) -> None:
        """Robot messages cannot be edited: the answer goes at the end."""

    async def status(self, text: str) -> None:
        """No status line on robot messages."""

    async def finish(self, text: str, answer: Answer) -> None:
        links = [f"[{f.filename or f.type}]({f.url})" for f in answer.files if f.url not in text]
        await self._deliver("\n\n".join(part for part in [text, *links] if part))
        await self.offer(answer)

    async def offer(self, answer: Answer, show: Show | None = None) -> None:
        """Suggested questions (and a rating) as a numbered message after the answer, or
        into the card's buttons (``show``)."""
        if self._offers is not None:
            await self._offers.after(answer, self._state, self._save, self._messages.text, show)

    async def fail(self, text: str, notice: str) -> None:
        await self._deliver(f"{text}\n\n{notice}" if text else notice)

    async def finish_form(self, text: str, form: FormView) -> None:
        """A form where its card could not go: numbered choices, kept as this answer's offer
        (``offers.to_choice``: a reply of just a number takes that action)."""
        actions = form.form.actions
        self._state["offered"] = {"form": {"ref": form.ref, "actions": [a.id for a in actions]}}
        await self._save(self._state)
        choices = "\n".join(f"{n}. {a.title}" for n, a in enumerate(actions, 1))
        await self._deliver("\n\n".join(p for p in (text, self._choose, choices) if p))

    async def _deliver(self, text: str) -> None:
        rendered = to_dingtalk_markdown(text) or text
        parts = split_text(rendered, MAX_MARKDOWN, measure=utf8_length)
        sent = int(self._state.get("sent") or 0)
        title = title_of(text, self._title)
        for number, part in enumerate(parts[sent:], start=sent + 1):
            await self._messages.markdown(title, part)
            self._state["sent"] = number
            await self._save(self._state)


class CardReply:
    """The answer streamed into an AI card; robot messages when the card cannot be made."""

    capabilities = ReplyCapabilities(can_edit=True, max_length=MAX_MARKDOWN, min_interval=0.5)

    def __init__(
        self,
        api: DingTalkAPI,
        chat: Chat,
        fallback: MessageReply,
        save: Save,
        *,
        state: State,
        template_id: str,
        content_key: str,
        buttons: bool = False,
    ) -> None:
        self._api = api
        self._chat = chat
        self._fallback = fallback
        self._save = save
        self._state = state  # one state per entry, shared by a card and its fallback
        self._template_id = template_id
        self._key = content_key
        self._buttons = buttons
        self._text = ""  # the answer so far, and the status line shown above it
        self._status = ""

    @property
    def card(self) -> str:
        return str(self._state.get("card") or "")

    async def start(self) -> None:
        if "card" in self._state:  # taken over: the card (or its absence) is already settled
            return
        out_track_id = f"difybot-{uuid.uuid4().hex}"
        try:
            body = self._card_body(out_track_id)
            await self._api.call(
                "POST",
                "/v1.0/card/instances/createAndDeliver",
                body,
                priority=Priority.SIGN_OF_LIFE,
            )
        except DingTalkAPIError as exc:
            log.warning("AI card not delivered (%s); answering with messages", exc.code)
            out_track_id = ""
        self._state["card"] = out_track_id
        await self._save(self._state)
        if not out_track_id:
            await self._fallback.start()

    def _card_body(self, out_track_id: str) -> dict[str, Any]:
        chat = self._chat
        body: dict[str, Any] = {
            "cardTemplateId": self._template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": {self._key: "", "flowStatus": PROCESSING}},
            "callbackType": "STREAM",
            "openSpaceId": chat.open_space,
            "userIdType": 1,  # staff ids (the default; peers report cards missing without it)
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
        }
        if chat.group:
            body["imGroupOpenDeliverModel"] = {"robotCode": self._api.client_id}
        else:
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT"}
        return body

    async def update(self, text: str) -> None:
        self._text = text
        if self.card:
            await self._stream(self._shown(), priority=Priority.INTERIM)

    async def status(self, text: str) -> None:
        """A tool call or workflow node, in italics above the answer until the next one."""
        self._status = text
        if self.card:
            await self._stream(self._shown(), priority=Priority.INTERIM)

    def _shown(self) -> str:
        return "\n\n".join(part for part in (f"*{self._status}*" if self._status else "",
                                             self._text) if part)  # fmt: skip

    async def finish(self, text: str, answer: Answer) -> None:
        if not self.card:
            await self._fallback.finish(text, answer)
            return
        links = [f"[{f.filename or f.type}]({f.url})" for f in answer.files if f.url not in text]
        final = "\n\n".join(part for part in [text, *links] if part)
        await self._stream(final, finalize=True)
        await self._settle(final, FINISHED)
        await self._fallback.offer(answer, self._show if self._buttons else None)

    async def fail(self, text: str, notice: str) -> None:
        if not self.card:
            await self._fallback.fail(text, notice)
            return
        shown = f"{text}\n\n{notice}" if text else notice
        await self._stream(shown, error=True)
        await self._settle(shown, FAILED)

    async def _show(self, data: dict[str, str]) -> None:
        """Card data for the template's buttons (public: every member sees the same)."""
        await update_card(self._api, self.card, data)

    async def _settle(self, text: str, status: str) -> None:
        """The card's final state in its data too (what dingtalk-stream's AI card ``finish`` and
        ``fail`` do): clients that missed the last streamed update still stop their spinner."""
        data = {self._key: to_dingtalk_markdown(text) or text, "flowStatus": status}
        body = {"outTrackId": self.card, "cardData": {"cardParamMap": data},
                "cardUpdateOptions": {"updateCardDataByKey": True}}  # fmt: skip
        with best_effort("settle the AI card's status", log):
            await self._api.call("PUT", "/v1.0/card/instances", body)

    async def _stream(
        self,
        text: str,
        *,
        finalize: bool = False,
        error: bool = False,
        priority: Priority = Priority.FINAL,
    ) -> None:
        """Interim updates go now or never (the shared budget's turn, ``DingTalkPacer``)."""
        body = {
            "outTrackId": self.card,
            "guid": uuid.uuid4().hex,  # fresh each time: DingTalk drops a repeated one
            "key": self._key,
            "content": to_dingtalk_markdown(text) or text,
            "isFull": True,
            "isFinalize": finalize,
            "isError": error,
        }
        await self._api.call("PUT", "/v1.0/card/streaming", body, priority=priority)


async def update_card(api: DingTalkAPI, out_track_id: str, data: dict[str, str]) -> None:
    """Set some of a card's public data, the other keys kept (``updateCardDataByKey``)."""
    body = {"outTrackId": out_track_id, "cardData": {"cardParamMap": data},
            "cardUpdateOptions": {"updateCardDataByKey": True}}  # fmt: skip
    await api.call("PUT", "/v1.0/card/instances", body)


def form_data(view: FormView) -> dict[str, str]:
    """A form's card data: its ref and its actions (a JSON list of ``{"id", "title"}``) for the
    template's loop of buttons (action id ``form``, params ``ref`` and ``action``), no note."""
    actions = [{"id": a.id, "title": a.title} for a in view.form.actions]
    return {"form_ref": view.ref, "form_actions": orjson.dumps(actions).decode(),
            "form_note": ""}  # fmt: skip


def closed_form_data(note: str) -> dict[str, str]:
    """A form that can no longer be answered: no buttons, ``note`` (the choice, or why)."""
    return {"form_actions": "[]", "form_note": note}


class FormCardReply(CardReply):
    """An AI card whose template has buttons (``DINGTALK_CARD_BUTTONS``): a Dify form's actions
    become buttons on the answer's card, and the run goes on in the same card once one is
    pressed (``bot.contract.FormReply``)."""

    async def show_form(self, text: str, form: FormView) -> None:
        """The answer and the form's text in the card, its stream left open for the rest of
        the run, the spinner stopped (``flowStatus``) and the buttons' data set. Without a card
        (a template DingTalk refused) the form goes as a message with numbered choices."""
        shown = "\n\n".join(part for part in (text, form.text) if part.strip())
        if not self.card:
            await self._fallback.finish_form(shown, form)
            return
        self._text, self._status = shown, ""
        await self._stream(shown)
        self._state["form_open"] = True  # saved before the buttons show: a press may come
        await self._save(self._state)
        await self._show(form_data(form) | {"flowStatus": FINISHED})

    async def _stream(
        self,
        text: str,
        *,
        finalize: bool = False,
        error: bool = False,
        priority: Priority = Priority.FINAL,
    ) -> None:
        """The run goes on after a press: its first sign of life takes the form's buttons off,
        ordered with the card's own updates (a press handler doing it could take the buttons
        of the run's next form). The choice is the form's note, set by the press."""
        if self._state.get("form_open"):
            self._state["form_open"] = False
            await self._save(self._state)
            with best_effort("take a form's buttons off its card", log):
                await self._show({"form_actions": "[]"})
        await super()._stream(text, finalize=finalize, error=error, priority=priority)
