"""Dify Human Input forms: shown when a run pauses, kept in the store, answered once.

    run pauses ─► pause(): record a PendingForm ─► the reply shows it
                     │  FormReply: the platform's buttons   otherwise: the text fallback
                     ▼                                         (numbered choices, fields one by one)
    answer (click, or the conversation's next message) ─► submit(): may this user answer?
        expired? ─► claim (one conditional UPDATE, across replicas) ─► Dify POST /form/...
                     └─► the run is followed (``Answerer.resume``) in the form's reply

Dify does not check who submits a form (a submit from another ``user`` is accepted:
hitl_form_submit_other_user), so who may answer is decided here: the person who asked, anyone
in the place when ``anyone`` is set, and the app's ``approvers``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.contract import Delivery, FormAnswer, FormReply, FormVerdict, FormView, Reply
from bot.dify.client import DifyClient
from bot.dify.stream import AnswerStream
from bot.errors import (
    DifyError,
    FormAlreadySubmitted,
    FormExpired,
    FormInvalid,
    FormNotFound,
)
from bot.models import Answer, FormAction, FormField, FormRequest, IncomingMessage, to_record
from bot.stores import FormStore, PendingForm, ReplyStates
from bot.texts import Texts

log = logging.getLogger(__name__)

FORM_KEY = "form"  # in a resumed answer's ``where``: the ref of the form it continues
OWN_PLACE = "form_own_place"  # ... in a place of its own (``Inbox.answer_form(where=...)``)
ACTION_KEY = "__action"  # among the gathered fields: the action chosen before them (a card)
_NUMBER = re.compile(r"^\s*(\d{1,3})\s*[.)]?\s*$")


@dataclass(frozen=True, slots=True)
class FormPolicy:
    """Who may answer a form: its asker; anyone (``anyone``, approval flows); an app's
    ``approvers`` (platform user ids, from the routes file)."""

    anyone: bool = False
    approvers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def allows(self, pending: PendingForm, user: str) -> bool:
        return self.anyone or user == pending.asker or user in self.approvers.get(pending.app, ())


def to_form_record(form: FormRequest) -> dict[str, Any]:
    return asdict(form)


def from_form_record(record: Mapping[str, Any]) -> FormRequest:
    data = dict(record)
    data["fields"] = tuple(
        FormField(**{**f, **{k: tuple(f[k]) for k in _TUPLES}}) for f in data.get("fields", ())
    )
    data["actions"] = tuple(FormAction(**a) for a in data.get("actions", ()))
    return FormRequest(**data)


_TUPLES = ("options", "file_types", "file_extensions", "upload_methods")


def view_of(pending: PendingForm) -> FormView:
    form = from_form_record(pending.form)
    return FormView(pending.ref, form, form.text().strip())


class FormDesk:
    """Records, shows and submits forms; ``replica`` names this process in claims."""

    def __init__(
        self,
        store: FormStore,
        states: ReplyStates,
        *,
        texts: Texts,
        policy: FormPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._states = states
        self._texts = texts
        self.policy = policy or FormPolicy()
        self._clock = clock

    # ---- the pause ---------------------------------------------------------------------------

    async def record(
        self,
        form: FormRequest,
        message: IncomingMessage,
        delivery: Delivery,
        *,
        reply: Reply,
        shown: str,
        dify_user: str,
    ) -> FormView:
        """Keep a form its reply is about to show (before: its buttons carry the ref)."""
        pending = PendingForm(
            ref=secrets.token_urlsafe(12),
            token=form.token,
            app=message.key.app,
            platform=message.platform,
            conversation_key=message.key.as_str(),
            dify_user=dify_user,
            workflow_run_id=form.workflow_run_id,
            asker=message.author,
            native=isinstance(reply, FormReply),
            form=to_form_record(form),
            message=to_record(message),
            where=dict(delivery.where),
            entry_id=delivery.entry_id,
            shown=shown,
            inputs=None if isinstance(reply, FormReply) else {},
            expires_at=float(form.expires_at) if form.expires_at is not None else None,
        )
        await self.store.add(pending)
        if form.expires_at is not None:  # the reply's state (where it shows) outlives the form
            await self._states.keep(delivery.entry_id, until=form.expires_at + 3600.0)
        return view_of(pending)

    def prompt(self, form: FormRequest, gathered: Mapping[str, Any], locale: str | None) -> str:
        """The text fallback's question: the next field, else the numbered actions."""
        missing = [f for f in form.fields if f.name not in gathered]
        if missing:
            ask = self._texts.get("form_field", locale).format(name=missing[0].name)
            return "\n".join([ask, *_numbered(missing[0].options)])
        titles = [action.title or action.id for action in form.actions]
        return "\n".join([self._texts.get("form_choose", locale), *_numbered(titles)])

    # ---- answers -----------------------------------------------------------------------------

    def take_text(self, pending: PendingForm, text: str) -> tuple[dict[str, Any], str | None]:
        """A text fallback reply: (the fields gathered, the chosen action's id or None). A
        reply that fits nothing leaves both as they were (the prompt is asked again)."""
        form = from_form_record(pending.form)
        gathered = dict(pending.inputs or {})
        missing = [f for f in form.fields if f.name not in gathered]
        if missing:
            value = _pick(text, missing[0].options) if missing[0].options else text.strip()
            if value:
                gathered[missing[0].name] = value
            if len(missing) > 1 or not value:
                return gathered, None
            if chosen := gathered.get(ACTION_KEY):
                return gathered, str(chosen)
            only = form.actions[0].id if len(form.actions) == 1 else None
            return gathered, only
        titles = {a.title.casefold(): a.id for a in form.actions}
        chosen = _pick(text, [a.id for a in form.actions]) or titles.get(text.strip().casefold())
        return gathered, chosen

    async def submit(
        self,
        pending: PendingForm,
        dify: DifyClient,
        *,
        action: str,
        inputs: Mapping[str, Any],
        user: str,
        by: str,
        locale: str | None,
    ) -> tuple[FormAnswer, AnswerStream | None]:
        """Check, claim (once across replicas) and submit; the form's new status is stored.
        Submitted, it also returns the run's events stream, subscribed before the submit: Dify
        relays only what is published after a subscription, and resumes within ~40 ms."""
        refused = await self._refusal(pending, action=action, inputs=inputs, user=user,
                                      by=by, locale=locale)  # fmt: skip
        if refused is not None:
            return refused, None
        stream = await self._subscribed(pending, dify)
        answer = await self._send(pending, dify, action=action, inputs=inputs, locale=locale)
        if answer.verdict is not FormVerdict.SUBMITTED and stream is not None:
            await stream.close()
            stream = None
        return answer, stream

    async def _refusal(
        self,
        pending: PendingForm,
        *,
        action: str,
        inputs: Mapping[str, Any],
        user: str,
        by: str,
        locale: str | None,
    ) -> FormAnswer | None:
        """Why this answer is not sent (None: it is, and the form is claimed for it)."""
        if not self.policy.allows(pending, user):
            return self._told(FormVerdict.NOT_ALLOWED, "form_not_allowed", locale)
        if pending.status in ("claimed", "submitted"):
            return self._told(FormVerdict.ALREADY, "form_already", locale)
        if pending.status == "expired" or self.lapsed(pending):
            await self.store.settle(pending.ref, "expired")
            return self._told(FormVerdict.EXPIRED, "form_expired", locale)
        form = from_form_record(pending.form)
        if form.fields and not inputs:  # a card's button: the fields are asked as messages
            await self.store.gather(pending.ref, {ACTION_KEY: action}, native=False)
            return FormAnswer(FormVerdict.ASKING, self.prompt(form, {}, locale))
        if not await self.store.claim(pending.ref, by=by):
            return self._told(FormVerdict.ALREADY, "form_already", locale)
        return None

    async def _subscribed(self, pending: PendingForm, dify: DifyClient) -> AnswerStream | None:
        """The run's events, subscribed now; None if Dify refuses (the run is then followed
        from its snapshot after the submit)."""
        try:
            return await dify.subscribe(
                pending.workflow_run_id, user=pending.dify_user, shown=pending.shown
            )
        except DifyError as exc:
            log.info("run %s not subscribed before the submit: %s", pending.workflow_run_id, exc)
            return None

    async def _send(
        self,
        pending: PendingForm,
        dify: DifyClient,
        *,
        action: str,
        inputs: Mapping[str, Any],
        locale: str | None,
    ) -> FormAnswer:
        inputs = {k: v for k, v in inputs.items() if k != ACTION_KEY}
        # The run's user, whoever clicked: only that user may follow the run's events.
        try:
            await dify.submit_form(
                pending.token, inputs=dict(inputs), action=action, user=pending.dify_user
            )
        except FormInvalid as exc:
            await self.store.settle(pending.ref, "open")
            notice = self._texts.get("form_invalid", locale).format(reason=exc.message)
            return FormAnswer(FormVerdict.INVALID, notice)
        except FormAlreadySubmitted:  # in Dify's web app, or by a call of its own
            await self.store.settle(pending.ref, "submitted")
            notice = self._texts.get("form_already", locale)
            return FormAnswer(FormVerdict.ALREADY, notice, elsewhere=True)
        except (FormExpired, FormNotFound):
            await self.store.settle(pending.ref, "expired")
            return self._told(FormVerdict.EXPIRED, "form_expired", locale)
        except DifyError as exc:
            log.warning("form submit failed ref=%s: %s", pending.ref, exc)
            await self.store.settle(pending.ref, "open")
            return self._told(FormVerdict.FAILED, "form_failed", locale)
        await self.store.settle(pending.ref, "submitted", inputs=dict(inputs))
        log.info("form submitted ref=%s action=%s", pending.ref, action)
        return FormAnswer(FormVerdict.SUBMITTED)

    def lapsed(self, pending: PendingForm) -> bool:
        """Past its expiry (Dify refuses it from that second on)."""
        return pending.expires_at is not None and pending.expires_at <= self._clock()

    def _told(self, verdict: FormVerdict, key: str, locale: str | None) -> FormAnswer:
        return FormAnswer(verdict, self._texts.get(key, locale))


def _numbered(items: list[str] | tuple[str, ...]) -> list[str]:
    return [f"{i}. {item}" for i, item in enumerate(items, 1)]


def _pick(text: str, options: list[str] | tuple[str, ...]) -> str | None:
    """The option a reply names: its number, or its text (any case)."""
    if (number := _NUMBER.match(text)) and 1 <= int(number.group(1)) <= len(options):
        return options[int(number.group(1)) - 1]
    wanted = text.strip().casefold()
    return next((option for option in options if option.casefold() == wanted), None)


class Continued:
    """The text fallback's continuation, in the reply of the message that answered the form:
    the answer text before the pause is already on screen above, so it is left out."""

    def __init__(self, reply: Reply, *, before: str) -> None:
        self._reply = reply
        self._before = before
        self.capabilities = reply.capabilities

    def _rest(self, text: str) -> str:
        if self._before and text.startswith(self._before):
            return text[len(self._before) :].lstrip("\n")
        return text

    async def start(self) -> None:
        await self._reply.start()

    async def update(self, text: str) -> None:
        await self._reply.update(self._rest(text))

    async def status(self, text: str) -> None:
        await self._reply.status(text)

    async def finish(self, text: str, answer: Answer) -> None:
        await self._reply.finish(self._rest(text), answer)

    async def fail(self, text: str, notice: str) -> None:
        await self._reply.fail(self._rest(text), notice)
