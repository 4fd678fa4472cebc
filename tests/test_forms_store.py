"""Pending forms on SQLite and PostgreSQL: claimed once however many replicas try, looked up
by conversation (the text fallback) and by the entry that answered; who may answer; the
routes file's approvers; two replicas getting the same click submit it once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from bot.answering.forms import FormDesk, FormPolicy
from bot.contract import Delivery, FormVerdict, FormView, ReplyCapabilities
from bot.dify.client import DifyClient, build_http
from bot.models import Answer
from bot.stores import PendingForm
from bot.texts import Texts
from difybot.routes_file import parse_routes
from storage.forms import FormStore
from storage.journal import Journal
from storage.units import Database
from tests.fakes.core import Replies, make_rig
from tests.fakes.dify import FakeDify, HumanFlow, HumanInput
from tests.test_reliability import message


def pending(ref: str = "r1", *, native: bool = True, **changes: Any) -> PendingForm:
    values: dict[str, Any] = {
        "ref": ref, "token": "tok", "app": "default", "platform": "test",
        "conversation_key": "test/W1/user/U1", "dify_user": "test:W1:U1",
        "workflow_run_id": "run", "asker": "U1", "native": native, "form": {},
        "message": {}, "where": {}, "entry_id": 1, "expires_at": time.time() + 3600,
    }  # fmt: skip
    return PendingForm(**{**values, **changes})


async def test_a_form_is_claimed_once_by_concurrent_callers(db: Database) -> None:
    store = FormStore(db)
    await store.add(pending())
    wins = await asyncio.gather(*(store.claim("r1", by=f"replica:{i}") for i in range(8)))
    assert sum(wins) == 1
    await store.settle("r1", "open")  # a refused submit: the form can be answered again
    assert await store.claim("r1", by="entry:7")
    assert (await store.answered(7)) is None  # answered_by names the claimer, not an entry id
    form = await store.get("r1")
    assert form is not None and (form.status, form.answered_by) == ("claimed", "entry:7")


async def test_the_text_fallback_finds_the_conversations_open_form(db: Database) -> None:
    store = FormStore(db)
    await store.add(pending("native", native=True))
    assert await store.open_in("test/W1/user/U1") is None  # buttons answer that one
    await store.add(pending("text", native=False))
    found = await store.open_in("test/W1/user/U1")
    assert found is not None and found.ref == "text"
    await store.gather("text", {"note": "ok"})
    again = await store.get("text")
    assert again is not None and again.inputs == {"note": "ok"}
    await store.settle("text", "submitted")
    assert await store.open_in("test/W1/user/U1") is None


def test_who_may_answer() -> None:
    form = pending(app="deploy")
    assert FormPolicy().allows(form, "U1") and not FormPolicy().allows(form, "U2")
    assert FormPolicy(anyone=True).allows(form, "U2")
    approvers = FormPolicy(approvers={"deploy": frozenset({"U9"})})
    assert approvers.allows(form, "U9") and not approvers.allows(pending(app="other"), "U9")


def test_the_routes_file_names_approvers_per_app() -> None:
    text = (
        "apps:\n  default:\n    approvers: U1, U2\n"
        "  ops:\n    api_key_env: OPS\n    approvers: U9\n"
    )
    routing = parse_routes(text, source="routes.yml", environ={"OPS": "app-ops"})
    assert routing.apps["default"].approvers == frozenset({"U1", "U2"})
    assert routing.apps["ops"].approvers == frozenset({"U9"})


@dataclass
class ButtonReply:
    """A reply with buttons of its own (``bot.contract.FormReply``)."""

    capabilities: ReplyCapabilities = field(default_factory=ReplyCapabilities)
    forms: list[FormView] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def start(self) -> None: ...

    async def update(self, text: str) -> None:
        self.calls.append(("update", text))

    async def status(self, text: str) -> None: ...

    async def finish(self, text: str, answer: Answer) -> None:
        self.calls.append(("finish", text))

    async def fail(self, text: str, notice: str) -> None:
        self.calls.append(("fail", notice))

    async def show_form(self, text: str, form: FormView) -> None:
        self.forms.append(form)


async def test_two_replicas_getting_the_same_click_submit_it_once(db: Database) -> None:
    node = HumanInput(inputs=(), after=("after form: action=", "{{#human.__action_id#}}"))
    async with FakeDify(flow=HumanFlow(steps=(node,)), version="1.14.1") as dify:
        shown = ButtonReply()
        rigs = []
        for name in ("a", "b"):
            client = DifyClient(build_http(dify.base_url), api_key=dify.api_key, mode=dify.mode)
            desk = FormDesk(FormStore(db), Journal(db), texts=Texts("en"))

            def restore(delivery: Delivery) -> ButtonReply:
                return shown  # the form's reply, rebuilt from its saved state

            rigs.append(make_rig(db, client, replica=name, forms=desk,
                                 replies=Replies(restore=restore)))  # fmt: skip
        try:
            await rigs[0].ask(message("ship it?", "C1:1.1"), shown)
            (form,) = shown.forms
            answers = await asyncio.gather(
                *(
                    rig.inbox.answer_form(form.ref, action="approve", inputs={}, user="U1")
                    for rig in rigs
                )
            )
            for rig in rigs:
                await asyncio.wait_for(rig.inbox.idle(), 10)
        finally:
            for rig in rigs:
                await rig.close()
                await rig.answerer.apps.default._http.aclose()
        submits = [r for r in dify.requests if r.path.startswith("/form/")]
    assert sorted(a.verdict for a in answers) == [FormVerdict.ALREADY, FormVerdict.SUBMITTED]
    assert len(submits) == 1
    assert shown.calls[-1] == ("finish", "before form: ship it?after form: action=approve")
