"""Which Slack events get answered, and as what: table-driven over captured payload shapes."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.slack.events import RouteOptions, Router, TtlMap, clean_text, thread_id
from bot.models import Scope
from tests.fakes.slack_payloads import event_body

BOT = "UBOT"
THREAD = "1700000100.000100"


def _router(**options: Any) -> Router:
    router = Router(TtlMap(3600), TtlMap(900), RouteOptions(**options))
    router.threads.set(thread_id("C111", THREAD), "U111")
    return router


def _route(router: Router, body: dict[str, Any]) -> Any:
    return router.route(body["event"], team="T0001", bot_user_id=BOT, event_id=body["event_id"])


QUESTION = "what is Dify?"
JOINED = {"thread_ts": "4.4", "parent_user_id": "U9"}
JOINED_AS = ("thread", "C111:4.4", "U9", "4.4", None)
MENTIONED = ("thread", "C111:5.5", "U111", "5.5", QUESTION)
IN_DM_THREAD = ("user", "U111", "U111", "1.1", None)
WELCOME = "hello & welcome, see Dify (https://dify.ai)"
FOLLOWED = ("thread", f"C111:{THREAD}", "U111", THREAD, None)
# name, payload, event changes, (scope, scope id, Dify user, reply thread, text) or None
ROUTES = [
    ("dm", "event_message_im", {}, ("user", "U111", "U111", None, WELCOME)),
    ("dm in a thread", "event_message_im", {"thread_ts": "1.1"}, IN_DM_THREAD),
    ("mention", "event_app_mention", {"ts": "5.5"}, MENTIONED),
    ("mention in a thread joins it", "event_app_mention", JOINED, JOINED_AS),
    ("followed thread", "event_message_thread_reply", {}, FOLLOWED),
    ("unfollowed thread", "event_message_thread_reply", {"thread_ts": "9.9"}, None),
    ("top-level channel message", "event_message_thread_reply", {"thread_ts": None}, None),
    ("message twin of a mention", "event_message_channel_mention", {"thread_ts": THREAD}, None),
    ("edit", "event_message_changed", {}, None),
    ("other bot", "event_message_bot", {}, None),
    ("own message", "event_message_im", {"user": BOT}, None),
    ("channel join", "event_message_im", {"subtype": "channel_join"}, None),
    ("only a mention", "event_app_mention", {"text": "<@UBOT>"}, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("payload", "changes", "expected"), [r[1:] for r in ROUTES], ids=[r[0] for r in ROUTES]
)
def test_route(payload: str, changes: dict[str, Any], expected: tuple[str, ...] | None) -> None:
    ask = _route(_router(), event_body(payload, **changes))
    if expected is None:
        assert ask is None
        return
    scope, scope_id, owner, thread, text = expected
    assert (ask.message.key.scope.value, ask.message.key.scope_id) == (scope, scope_id)
    assert ask.message.user_id == owner and ask.place.thread_ts == thread
    assert text is None or ask.message.text == text
    assert ask.message.dify_user == f"slack:T0001:{owner}"


def test_duplicates_are_dropped_by_event_id_and_by_post() -> None:
    router = _router()
    body = event_body("event_app_mention", ts="6.6")
    assert _route(router, body) is not None
    assert _route(router, body) is None  # Slack's retry: same event_id
    twin = event_body("event_message_channel_mention", ts="6.6", thread_ts="6.6")
    assert _route(router, twin) is None


def test_a_mention_makes_the_thread_followed() -> None:
    router = _router()
    _route(router, event_body("event_app_mention", ts="7.7"))
    reply = event_body(
        "event_message_thread_reply", thread_ts="7.7", ts="7.8", parent_user_id="U111"
    )
    ask = _route(router, reply)
    assert ask is not None and ask.message.key.scope_id == "C111:7.7"


def test_other_bots_when_allowed_and_channel_scope() -> None:
    assert _route(_router(allow_bots=True), event_body("event_message_bot")) is not None
    ask = _route(_router(channel_scope="channel"), event_body("event_app_mention", ts="8.8"))
    assert ask.message.key.scope is Scope.CHANNEL and ask.message.user_id == "C111"


def test_dm_threads_setting() -> None:
    ask = _route(_router(dm_threads=True), event_body("event_message_im"))
    assert ask.place.thread_ts == ask.message.message_id.split(":")[1]


@pytest.mark.parametrize(
    ("wire", "plain"),
    [
        ("<@UBOT> hi", "hi"),
        ("ask <@U2> about it", "ask <@U2> about it"),
        ("see <#C1|general>", "see #general"),
        ("<!here> look", "@here look"),
        ("<https://a.io>", "https://a.io"),
        ("<mailto:a@b.io|a@b.io>", "a@b.io (mailto:a@b.io)"),
        ("1 &lt; 2 &amp;&amp; 3 &gt; 2", "1 < 2 && 3 > 2"),
    ],
)
def test_clean_text(wire: str, plain: str) -> None:
    assert clean_text(wire, BOT) == plain
