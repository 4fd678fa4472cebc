"""Human Input forms through the core's text fallback: the terminal (which has no buttons)
shows the form as text, asks its fields one by one, and the next lines answer the form, not
Dify; the run then goes on in the same chat, the text before the pause left where it was."""

from __future__ import annotations

import io
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager

from adapters.console.chat import ConsoleChat
from bot.answering.forms import FormDesk, FormPolicy
from bot.dify.client import DifyClient, build_http
from bot.texts import Texts
from storage.forms import FormStore
from storage.journal import Journal
from storage.units import Database
from tests.fakes.core import CoreRig, core_rig
from tests.fakes.dify import FakeDify, HumanFlow, HumanInput


async def lines(*typed: str) -> AsyncGenerator[str]:
    for line in typed:
        yield line + "\n"


@asynccontextmanager
async def forms_rig(
    db: Database, dify: FakeDify, policy: FormPolicy | None = None
) -> AsyncIterator[CoreRig]:
    http = build_http(dify.base_url)
    client = DifyClient(http, api_key=dify.api_key, mode=dify.mode)
    desk = FormDesk(FormStore(db), Journal(db), texts=Texts("en"), policy=policy)
    try:
        async with core_rig(db, client, forms=desk) as rig:
            yield rig
    finally:
        await http.aclose()


async def chat(rig: CoreRig, *typed: str) -> str:
    out = io.StringIO()
    console = ConsoleChat(rig.inbox, out=out, tty=False, user="ann")
    rig.inbox.register(console.platform())
    await console.run(lines(*typed))
    return out.getvalue()


async def test_terminal_answers_a_form_line_by_line_and_the_run_goes_on(db: Database) -> None:
    async with FakeDify(flow=HumanFlow(), version="1.14.1") as dify, forms_rig(db, dify) as rig:
        screen = await chat(rig, "ship it?", "looks good", "1", "and then?")
        submits = dify.requests_to(f"/form/human_input/{dify.runs[0].forms[0].token}")
    paused, _, rest = screen.partition("Please reply with “note”:")
    assert "before form: ship it?" in paused and "Please review: ship it?" in paused
    assert "{{#$output" not in paused  # the field placeholder is not shown
    assert "Reply with the number of your choice:\n1. Approve\n2. Reject" in rest
    assert "after form: action=approve note=looks good" in rest
    resumed = rest[rest.index("after form") :]
    assert "before form" not in resumed.split("\n")[0]  # shown once, above; never rewound
    [submit] = [r for r in submits if r.method == "POST"]
    assert submit.json == {
        "inputs": {"note": "looks good"},
        "action": "approve",
        "user": "console:local:ann",
    }
    # The form answered, the next line is a question for Dify again (a new run).
    assert len(dify.requests_to("/chat-messages")) == 2
    assert len(dify.runs) == 2


async def test_a_reply_that_names_no_action_asks_again(db: Database) -> None:
    async with FakeDify(flow=HumanFlow(), version="1.14.1") as dify, forms_rig(db, dify) as rig:
        screen = await chat(rig, "ship it?", "fine", "maybe", "reject")
    assert screen.count("Reply with the number of your choice:") == 2
    assert "after form: action=reject note=fine" in screen
    submits = [r for r in dify.requests if r.method == "POST" and r.path.startswith("/form/")]
    assert len(submits) == 1


async def test_a_workflow_apps_form_and_its_whole_continuation(db: Database) -> None:
    # A Workflow streams its answer as text_chunk and names no message: every chunk after the
    # submit must arrive (the run's events are subscribed before the submit, so none is lost).
    flow = HumanFlow.captured_workflow()
    async with (
        FakeDify(mode="workflow", flow=flow, version="1.14.1") as dify,
        forms_rig(db, dify) as rig,
    ):
        screen = await chat(rig, "deploy v2", "looks good", "1")
    assert "Please review: deploy v2" in screen
    assert screen.rstrip().endswith("approve\nlooks good\ndeploy v2")
    (events,) = [r for r in dify.requests if r.path.startswith("/workflow/")]
    assert "include_state_snapshot" not in events.query  # subscribed before, not replayed


async def test_an_expired_form_lets_the_next_message_go_to_dify(db: Database) -> None:
    # The fake Dify's clock runs two hours behind: its one-hour form is already past expiry.
    async with (
        FakeDify(flow=HumanFlow(), version="1.14.1", clock=lambda: time.time() - 7200) as dify,
        forms_rig(db, dify) as rig,
    ):
        await chat(rig, "ship it?", "another question")
        asked = [r.json["query"] for r in dify.requests_to("/chat-messages")]
    assert asked == ["ship it?", "another question"]
    assert not [r for r in dify.requests if r.path.startswith("/form/")]


async def test_a_run_with_two_forms_pauses_twice_and_goes_on_each_time(db: Database) -> None:
    first = HumanInput(
        node_id="check", title="Check", content="Checked {{#sys.query#}}?", inputs=(),
        after=("checked=", "{{#check.__action_id#}}", "; "),
    )  # fmt: skip
    second = HumanInput(
        node_id="ship", title="Ship", content="Ship it?", inputs=(),
        after=("shipped=", "{{#ship.__action_id#}}"),
    )  # fmt: skip
    flow = HumanFlow(steps=(first, second))
    async with FakeDify(flow=flow, version="1.14.1") as dify, forms_rig(db, dify) as rig:
        screen = await chat(rig, "v9", "1", "2")
        tokens = [f.token for run in dify.runs for f in run.forms]
    assert "Checked v9?" in screen and "Ship it?" in screen
    assert screen.rstrip().endswith("shipped=reject")
    assert "checked=approve; " in screen
    assert len(set(tokens)) == 2 and len(dify.requests_to("/chat-messages")) == 1
