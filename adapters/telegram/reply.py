"""``TelegramReply``: one answer in a Telegram chat, streamed by draft or by edits.

Private chats stream with ``sendMessageDraft`` (Bot API 9.3+: a draft the user sees grow, no
message until the final ``sendMessage``); where drafts are refused (groups answer
TEXTDRAFT_PEER_INVALID, an older Bot API server 404) the answer is a message edited as it grows
(``editMessageText``). Every send and edit goes through the chat's ``TelegramPacer``: the final
answer waits for its slot, interim edits and drafts go now or never; an edit that would change
nothing is never sent. Answers past 4096 characters continue in further messages,
split at paragraph boundaries. In a group the answer replies to the question
(``reply_parameters``), in its forum topic. Posted message ids are saved in the journal, so a
replica that takes the answer over edits them instead of posting a second answer.

A Dify form (``show_form``) ends the answer with its text and one inline button per action; the
run, once the form is answered, goes on in a reply rebuilt from that saved state, which edits the
same messages as the run's text grows. Its first sign of life (a node's status: a workflow may
show no new text for a while) takes the form's buttons away; done here rather than by the press's
handler, the removal is ordered with the run's own edits and never takes the final answer's
buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.telegram.api import InputFile, TelegramApi, TelegramError
from adapters.telegram.files import MAX_ANSWER_FILE, post_answer_files
from adapters.telegram.formatting import escape, to_parts, to_plain
from adapters.telegram.keyboard import AnswerMemory, Keyboard, answer_keyboard, form_keyboard
from adapters.telegram.pacer import Skipped, TelegramPacer
from bot.contract import FormView, ReplyCapabilities
from bot.delivery.scheduler import Priority
from bot.errors import BadFormatting
from bot.files.answers import AnswerFiles, AnswerUploads
from bot.models import Answer
from bot.ops.effort import best_effort, cancelled
from bot.text import split_text

log = logging.getLogger(__name__)

TYPING_EVERY = 4.5  # a chat action shows for 5 s or until the bot's next message
DRAFT_REFRESH = 20.0  # a draft fades after 30 s without a new frame
Suggest = Callable[[Answer], Awaitable[list[str]]]
Save = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Place:
    """Where an answer goes: ``reply_to`` (groups) is the question, ``thread`` a forum topic."""

    chat: int
    group: bool
    thread: int | None = None
    reply_to: int | None = None
    root: int | None = None  # the reply chain this answer continues (groups, thread scope)

    def to_record(self) -> dict[str, Any]:
        return {"chat": self.chat, "group": self.group, "thread": self.thread,
                "reply_to": self.reply_to, "root": self.root}  # fmt: skip

    @classmethod
    def from_record(cls, record: Any) -> Place:
        def number(name: str) -> int | None:
            value = record.get(name)
            return int(value) if isinstance(value, int) else None

        return cls(int(record["chat"]), bool(record.get("group")), number("thread"),
                   number("reply_to"), number("root"))  # fmt: skip


@dataclass(frozen=True)
class ReplyKit:
    """What every reply of one bot shares."""

    api: TelegramApi
    pacer: TelegramPacer
    memory: AnswerMemory
    text: Callable[[str, str | None], str]
    suggest: Suggest | None = None
    files: AnswerFiles | None = None
    drafts: bool = True
    feedback: bool = True
    typing_every: float = TYPING_EVERY
    draft_refresh: float = DRAFT_REFRESH
    typing: set[asyncio.Task[None]] = field(default_factory=set)  # stopped at shutdown


@dataclass(slots=True)
class _Shown:
    html: str
    message_id: int = 0


class TelegramReply:
    """Implements ``bot.contract.Reply`` for Telegram."""

    def __init__(
        self,
        kit: ReplyKit,
        place: Place,
        *,
        entry_id: int,
        locale: str | None,
        save: Save | None = None,
        resume: list[int] | None = None,
        form_shown: bool = False,
    ) -> None:
        interval = 3.0 if place.group else 1.0  # 20 messages a minute in a group
        self.capabilities = ReplyCapabilities(can_edit=True, max_length=4096, min_interval=interval)
        self._kit, self._place, self._locale, self._save = kit, place, locale, save
        self._shown = [_Shown("", m) for m in resume or ()]
        # Drafts are private-chat only; one draft per answer, named by its journal entry. An
        # answer taken over keeps editing the message already posted (a draft would be a second).
        drafts = kit.drafts and not place.group and not self._shown
        self._draft_id = (entry_id % 2_000_000_000) + 1 if drafts else 0
        self._draft_html = ""
        self._draft_at = 0.0
        self._plain = False  # Telegram refused our HTML once: plain text from then on
        self._typing: asyncio.Task[None] | None = None
        self._form_shown = form_shown and bool(self._shown)  # its buttons are under the last

    # ---- the contract -----------------------------------------------------------------------

    async def start(self) -> None:
        await self._drop_form_buttons()
        self._typing = asyncio.create_task(self._keep_typing())
        self._kit.typing.add(self._typing)
        self._typing.add_done_callback(self._kit.typing.discard)

    async def update(self, text: str) -> None:
        parts = self._parts(text)
        if not parts:
            return
        self._form_shown = False  # the edit below takes the form's buttons away
        try:
            if self._draft_id and await self._draft(parts):
                return
            await self._show(parts, keyboard=None, priority=Priority.INTERIM)
        except Skipped:
            return  # no slot now: a later update, or the final answer, shows it

    async def status(self, text: str) -> None:
        """The typing indicator says the answer runs; no status line in a Telegram message. (A
        run going on after a form: its first sign of life takes the form's buttons away.)"""
        await self._drop_form_buttons()

    async def finish(self, text: str, answer: Answer) -> None:
        kit = self._kit
        uploads = (
            await AnswerUploads.fetch(kit.files, text, answer, limit=MAX_ANSWER_FILE)
            if kit.files
            else None
        )
        shown_text = uploads.text if uploads else text
        parts = self._parts(shown_text) or [escape(self._word("empty"))]
        labels = self._labels() if answer.message_id and answer.dify_user else None
        await self._end(parts, answer_keyboard(labels=labels))
        last = self._shown[-1].message_id if self._shown else 0
        if last and labels is not None:
            with best_effort("remember the answer for its feedback buttons", log):
                await kit.memory.remember_answer(
                    self._place.chat, last,
                    message_id=answer.message_id, user=answer.dify_user, app=answer.app,
                )  # fmt: skip
        if uploads is not None:
            await self._post_files(uploads)
        if kit.suggest is not None and answer.message_id and last:
            await self._offer_suggestions(answer, last, labels)

    async def fail(self, text: str, notice: str) -> None:
        body = f"{text}\n\n_{notice}_" if text.strip() else f"_{notice}_"
        await self._end(self._parts(body), None)

    async def show_form(self, text: str, form: FormView) -> None:
        """``bot.contract.FormReply``: the answer so far, the form's text, one button per action
        under the last part; the saved state says so, for the reply that goes on after it."""
        body = "\n\n".join(part for part in (text, form.text) if part.strip())
        await self._end(self._parts(body) or [escape(form.form.node_title)], form_keyboard(form))
        if self._save is not None and self._shown:
            with best_effort("save the reply's state (the form's buttons)", log):
                await self._save({"messages": [s.message_id for s in self._shown], "form": True})

    async def _drop_form_buttons(self) -> None:
        """The form was answered: its buttons go before anything else is shown (a text edit
        takes them away too: ``update`` and ``finish`` need no call of their own)."""
        if not self._form_shown:
            return
        self._form_shown = False
        params = {"chat_id": self._place.chat, "message_id": self._shown[-1].message_id}
        with best_effort("take a form's buttons away", log):
            await self._send("editMessageReplyMarkup", params)

    # ---- showing ------------------------------------------------------------------------------

    def _parts(self, text: str) -> list[str]:
        if self._plain:
            return [escape(p) for p in split_text(text, 4096)] if text.strip() else []
        return to_parts(text)

    async def _end(self, parts: list[str], keyboard: Keyboard | None) -> None:
        await self._stop_typing()
        try:
            await self._show(parts, keyboard=keyboard, final=True)
            await self._drop_extra(len(parts))
        except TelegramError as exc:  # blocked by the user, removed from the group...
            log.error("final answer refused in chat %s: %s", self._place.chat, exc.message)

    async def _drop_extra(self, keep: int) -> None:
        """An answer that shrank (Dify replaced it) leaves no stale part behind."""
        extra, self._shown = self._shown[keep:], self._shown[:keep]
        for shown in extra:
            with best_effort("delete a part the final answer no longer has", log):
                params = {"chat_id": self._place.chat, "message_id": shown.message_id}
                await self._kit.api.call("deleteMessage", params)
        if extra and self._save is not None:
            with best_effort("save the reply's state", log):
                await self._save({"messages": [shown.message_id for shown in self._shown]})

    async def _show(
        self,
        parts: list[str],
        *,
        keyboard: Keyboard | None,
        final: bool = False,
        priority: Priority = Priority.FINAL,
    ) -> None:
        for index, html in enumerate(parts):
            markup = keyboard if final and index == len(parts) - 1 else None
            try:
                await self._show_part(index, html, markup, priority=priority)
            except BadFormatting as exc:  # never expected: our HTML is checked; say it, go plain
                log.error("Telegram refused the answer's HTML (%s); sending plain text", exc)
                self._plain = True
                await self._show_part(index, html, markup, plain=True, priority=priority)

    async def _show_part(
        self,
        index: int,
        html: str,
        markup: Keyboard | None,
        *,
        plain: bool = False,
        priority: Priority = Priority.FINAL,
    ) -> None:
        params: dict[str, Any] = {"chat_id": self._place.chat, "text": html}
        if plain:
            params["text"] = to_plain(html)
        else:
            params["parse_mode"] = "HTML"
        if markup is not None:
            params["reply_markup"] = markup
        shown = html + repr(markup)
        if index < len(self._shown):
            if self._shown[index].html == shown:
                return  # nothing would change: Telegram answers "message is not modified"
            params["message_id"] = self._shown[index].message_id
            await self._send("editMessageText", params, priority=priority)
            self._shown[index].html = shown
            return
        placed = self._placed(params, first=index == 0)
        result = await self._send("sendMessage", placed, priority=priority)
        self._shown.append(_Shown(shown, int((result or {}).get("message_id") or 0)))
        await self._remember(self._shown[-1].message_id)

    def _placed(self, params: dict[str, Any], *, first: bool) -> dict[str, Any]:
        place = self._place
        if place.thread is not None:
            params["message_thread_id"] = place.thread
        if first and place.reply_to is not None:
            params["reply_parameters"] = {
                "message_id": place.reply_to, "allow_sending_without_reply": True,
            }  # fmt: skip
        return params

    async def _draft(self, parts: list[str], *, again: bool = False) -> bool:
        """Completed parts as messages, the growing one as the draft (``again``: even when
        unchanged); False: no drafts here."""
        if len(parts) > 1:
            await self._show(parts[:-1], keyboard=None, priority=Priority.INTERIM)
        html = parts[-1]
        if html == self._draft_html and not again:
            return True
        params = {"chat_id": self._place.chat, "draft_id": self._draft_id, "text": html,
                  "parse_mode": "HTML", "message_thread_id": self._place.thread,
                  "can_stop": True}  # fmt: skip
        try:
            await self._send("sendMessageDraft", params, lane="draft", priority=Priority.INTERIM)
        except BadFormatting as exc:  # never expected: our HTML is checked; go plain
            log.error("Telegram refused the draft's HTML (%s); plain text from now on", exc)
            self._plain = True
            return True
        except TelegramError as exc:
            if exc.status == 429 or (exc.status or 0) >= 500:
                return True  # this frame is lost; the next one (or the final message) follows
            log.info("drafts unavailable in chat %s (%s); editing a message instead",
                     self._place.chat, exc.message)  # fmt: skip
            self._draft_id = 0
            return False
        self._draft_html = html
        self._draft_at = asyncio.get_running_loop().time()
        return True

    async def _send(
        self,
        method: str,
        params: dict[str, Any],
        files: dict[str, InputFile] | None = None,
        *,
        lane: str = "message",
        priority: Priority = Priority.FINAL,
    ) -> Any:
        api = self._kit.api

        async def call() -> Any:
            return await api.call(method, params, files=files)

        try:
            return await self._kit.pacer.send(
                self._place.chat, call, group=self._place.group, lane=lane, priority=priority,
                turn_of=self if priority is Priority.INTERIM else None,
            )  # fmt: skip
        except TelegramError as exc:
            if exc.not_modified:
                return None
            raise

    async def _remember(self, message_id: int) -> None:
        if self._save is not None:
            with best_effort("save the reply's state (a taker would post anew)", log):
                await self._save({"messages": [shown.message_id for shown in self._shown]})
        place = self._place
        if place.group and place.root is not None and message_id:
            with best_effort("remember the reply chain", log):
                await self._kit.memory.remember_root(place.chat, message_id, place.root)

    # ---- after the answer ---------------------------------------------------------------------

    async def _post_files(self, uploads: AnswerUploads) -> None:
        params = self._placed({"chat_id": self._place.chat}, first=False)

        async def send(method: str, values: dict[str, Any], files: Any) -> Any:
            return await self._send(method, dict(values), files)

        links = await post_answer_files(uploads, send, params)
        if links:
            with best_effort("post the links of answer files", log):
                await self._send("sendMessage", {**params, "text": escape("\n".join(links))})

    async def _offer_suggestions(
        self, answer: Answer, message_id: int, labels: tuple[str, str] | None
    ) -> None:
        """Dify's suggested questions come from a separate (slow) call: they join the answer's
        keyboard afterwards, so the answer is never held back for them."""
        kit = self._kit
        assert kit.suggest is not None
        with best_effort("offer suggested questions", log):
            questions = (await kit.suggest(answer))[:3]
            if not questions:
                return
            await kit.memory.remember_questions(self._place.chat, message_id, questions)
            markup = answer_keyboard(labels=labels, questions=questions)
            params = {"chat_id": self._place.chat, "message_id": message_id, "reply_markup": markup}
            await self._send("editMessageReplyMarkup", params, priority=Priority.CLEANUP)

    def _labels(self) -> tuple[str, str] | None:
        if not self._kit.feedback:
            return None
        return self._word("telegram_like"), self._word("telegram_dislike")

    def _word(self, key: str) -> str:
        return self._kit.text(key, self._locale)

    # ---- typing -------------------------------------------------------------------------------

    async def _keep_typing(self) -> None:
        params: dict[str, Any] = {"chat_id": self._place.chat, "action": "typing"}
        if self._place.thread is not None:
            params["message_thread_id"] = self._place.thread
        while True:
            try:
                await self._kit.api.call("sendChatAction", params, timeout=10)
            except TelegramError as exc:
                log.info("sendChatAction refused in chat %s: %s", self._place.chat, exc.message)
                if exc.status != 429:
                    return
            await asyncio.sleep(self._kit.typing_every)
            await self._keep_draft()

    async def _keep_draft(self) -> None:
        """A draft is a 30-second preview (Bot API): through a long pause in the answer (a
        tool, a slow node) it is shown again before it fades."""
        shown, at = self._draft_html, self._draft_at
        age = asyncio.get_running_loop().time() - at
        if self._draft_id and shown and age > self._kit.draft_refresh:
            with best_effort("show the draft again", log), contextlib.suppress(Skipped):
                await self._draft([shown], again=True)

    async def _stop_typing(self) -> None:
        task, self._typing = self._typing, None
        await cancelled(task)
        self._kit.pacer.done(self)  # no more interim calls: it stops taking turns
        self._kit.pacer.done(self)  # no more interim calls: it stops taking turns


async def send_message(
    kit: ReplyKit, place: Place, html: str, *, markup: Keyboard | None = None
) -> Any:
    """One message of the bot's own (a command's answer), paced like the answers."""
    params: dict[str, Any] = {"chat_id": place.chat, "text": html, "parse_mode": "HTML",
                              "reply_markup": markup,
                              "message_thread_id": place.thread}  # fmt: skip
    if place.reply_to is not None:
        params["reply_parameters"] = {"message_id": place.reply_to,
                                      "allow_sending_without_reply": True}  # fmt: skip

    async def call() -> Any:
        return await kit.api.call("sendMessage", params)

    return await kit.pacer.send(place.chat, call, group=place.group)
