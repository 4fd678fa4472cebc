"""Every webhook route, fed random payloads that are signed (and encrypted) as the platform
does: whatever is inside, the answer is 2xx or 4xx, never 5xx, and the server stays up.

One difybot (all platforms on) serves every example from its own thread and loop, so examples
are plain requests; each is signed afresh (its own timestamp and nonce), as the platforms do.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.dify import FakeDify
from tests.fakes.slack_api import BOT_TOKEN, FakeSlack
from tests.fakes.slack_bot import SIGNING_SECRET
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import (
    AES_KEY,
    BOT_AES_KEY,
    TOKEN,
    difybot,
    wechat_settings,
    wecom_settings,
)
from tests.fakes.wechat_crypto import TencentCrypto, sign
from tests.fakes.wechat_push import to_xml

EXAMPLES = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


def shaped(keys: list[str], kinds: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the platform's own keys, the platform's own kinds, and anything as values."""
    return st.fixed_dictionaries(
        {"type": st.sampled_from(kinds) | st.text(max_size=8)},
        optional={key: json_values for key in keys},
    )


# A random voice push names a media id the fake API does not know: fetching it fails as it would
# on WeChat (40007 invalid media_id), the user is told, and one WARNING says so.
NOT_FETCHED = r"^voice not (fetched|transcribed)"


@dataclass
class Server:
    url: str
    api: FakeWeChatAPI
    http: httpx.Client

    def post(self, path: str, body: bytes, *, query: dict[str, str] | None = None,
             headers: dict[str, str] | None = None) -> int:  # fmt: skip
        return self.http.post(
            self.url + path, content=body, params=query, headers=headers
        ).status_code


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("webhooks") / "difybot.db"
    ready, found = threading.Event(), {}

    async def run() -> None:
        stop = asyncio.Event()
        async with FakeDify() as dify, FakeWeChatAPI() as api, FakeSlack() as slack:
            config = {
                **wechat_settings(api, wechat_encoding_aes_key=AES_KEY),
                **wecom_settings(api),
                "slack_bot_token": BOT_TOKEN, "slack_signing_secret": SIGNING_SECRET,
                "slack_api_url": slack.url, "rate_limit_per_minute": 0,
            }  # fmt: skip
            async with difybot(dify, database, **config) as bot:
                loop = asyncio.get_running_loop()
                found.update(url=bot.url, api=api, stop=lambda: loop.call_soon_threadsafe(stop.set))
                ready.set()
                await stop.wait()

    thread = threading.Thread(target=lambda: asyncio.run(run()), name="difybot-under-test")
    thread.start()
    assert ready.wait(30), "difybot did not start"
    with httpx.Client(timeout=10) as http:
        yield Server(found["url"], found["api"], http)
        assert http.get(found["url"] + "/healthz").status_code == 200  # still up after it all
    found["stop"]()
    thread.join(30)


def no_5xx(status: int) -> None:
    assert 200 <= status < 500, status


def fresh() -> tuple[str, str]:
    """A timestamp and a nonce never used before (not ``random``: Hypothesis seeds it the same
    for every example, and a repeated nonce is a replay)."""
    return str(int(time.time())), str(10**9 + secrets.randbelow(9 * 10**9))


# ---- Slack ---------------------------------------------------------------------------------

slack_events = st.fixed_dictionaries(
    {"type": st.just("event_callback"), "team_id": st.just("T0001") | json_values,
     "event": json_values | shaped(["channel", "ts", "thread_ts", "user", "text", "files",
                                    "subtype", "bot_id", "channel_type", "tab", "event_ts"],
                                   ["message", "app_mention", "app_home_opened"])},
    optional={"event_id": json_values, "authorizations": json_values, "api_app_id": json_values},
)  # fmt: skip
slack_interactive = shaped(
    ["actions", "user", "channel", "team", "message", "container", "response_url", "trigger_id"],
    ["block_actions", "view_submission", "shortcut", "message_action"],
)
slack_commands = st.dictionaries(
    st.sampled_from(["command", "text", "user_id", "channel_id", "team_id", "response_url",
                     "trigger_id", "payload"]),
    st.text(max_size=20) | st.just("/dify"), max_size=7,
)  # fmt: skip
slack_bodies = st.one_of(
    slack_events.map(lambda b: (json.dumps(b).encode(), "application/json")),
    shaped(["challenge", "token", "event"], ["url_verification", "app_rate_limited"]).map(
        lambda b: (json.dumps(b).encode(), "application/json")
    ),
    (slack_interactive.map(json.dumps) | st.text(max_size=30)).map(
        lambda p: (urlencode({"payload": p}).encode(), "application/x-www-form-urlencoded")
    ),
    slack_commands.map(lambda f: (urlencode(f).encode(), "application/x-www-form-urlencoded")),
    st.tuples(st.binary(max_size=200), st.sampled_from(["application/json", "text/plain", ""])),
)


@EXAMPLES
@given(slack_bodies)
@pytest.mark.allow_warnings("^Unhandled request")
def test_slack_events_take_any_signed_body(server: Server, sent: tuple[bytes, str]) -> None:
    body, content_type = sent
    stamp = str(int(time.time()))
    mac = hmac.new(SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    headers = {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + mac.hexdigest()}
    if content_type:
        headers["Content-Type"] = content_type
    no_5xx(server.post("/slack/events", body, headers=headers))


# ---- WeChat and WeCom ---------------------------------------------------------------------

MSG_TYPES = ["text", "image", "voice", "video", "location", "link", "event", "file"]
words = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=16)
xml_fields = st.fixed_dictionaries(
    {"MsgType": st.sampled_from(MSG_TYPES) | st.text(max_size=6)},
    optional={name: st.text(max_size=16) | st.integers() for name in (
        "ToUserName", "FromUserName", "CreateTime", "Content", "MsgId", "MediaId", "PicUrl",
        "Event", "EventKey", "Recognition", "Format", "AgentID")},
)  # fmt: skip
# Pushes whose envelope is right and whose content is anything: they reach the dispatcher.
well_formed_pushes = st.fixed_dictionaries(
    {"ToUserName": words, "FromUserName": words.filter(bool), "CreateTime": st.integers(0, 2**31),
     "MsgType": st.sampled_from(MSG_TYPES), "MsgId": st.integers(1, 2**63)},
    optional={name: words for name in (
        "Content", "MediaId", "PicUrl", "Event", "EventKey", "Recognition", "Format")},
)  # fmt: skip
inner_xml = st.one_of(
    well_formed_pushes.map(to_xml), xml_fields.map(to_xml), st.binary(max_size=120)
)


@EXAMPLES
@given(inner_xml)
@pytest.mark.allow_warnings(NOT_FETCHED)
def test_the_official_account_takes_any_encrypted_push(server: Server, inner: bytes) -> None:
    stamp, nonce = fresh()
    encrypt = TencentCrypto(AES_KEY, server.api.app_id).encrypt(inner)
    query = {"signature": sign(TOKEN, stamp, nonce), "timestamp": stamp, "nonce": nonce,
             "encrypt_type": "aes", "msg_signature": sign(TOKEN, stamp, nonce, encrypt),
             "openid": "o-fuzz"}  # fmt: skip
    no_5xx(server.post("/wechat", to_xml({"ToUserName": "gh", "Encrypt": encrypt}), query=query))


@EXAMPLES
@given(inner_xml)
@pytest.mark.allow_warnings(NOT_FETCHED)
def test_the_wecom_app_takes_any_encrypted_push(server: Server, inner: bytes) -> None:
    stamp, nonce = fresh()
    encrypt = TencentCrypto(AES_KEY, server.api.corp_id).encrypt(inner)
    query = {"msg_signature": sign(TOKEN, stamp, nonce, encrypt), "timestamp": stamp,
             "nonce": nonce}  # fmt: skip
    no_5xx(server.post("/wecom", to_xml({"ToUserName": "ww", "Encrypt": encrypt}), query=query))


AIBOT_TYPES = ["text", "image", "mixed", "stream", "event", "file", "voice"]
aibot_payloads = st.fixed_dictionaries(
    {"msgtype": st.sampled_from(AIBOT_TYPES) | st.text(max_size=6)},
    optional={name: json_values for name in (
        "msgid", "aibotid", "chatid", "chattype", "from", "response_url", "text", "image",
        "mixed", "stream", "event", "file", "voice", "quote")},
)  # fmt: skip
contents = st.fixed_dictionaries({}, optional={"content": words, "url": words, "id": words})
well_formed_callbacks = st.fixed_dictionaries(
    {"msgid": words.filter(bool), "aibotid": words, "msgtype": st.sampled_from(AIBOT_TYPES),
     "from": st.fixed_dictionaries({"userid": words}),
     "chattype": st.sampled_from(["single", "group"])},
    optional={name: json_values | contents for name in (
        "text", "image", "mixed", "stream", "event", "file", "voice", "chatid")},
)  # fmt: skip


@EXAMPLES
@given(
    (well_formed_callbacks | aibot_payloads).map(lambda p: json.dumps(p).encode())
    | st.binary(max_size=120)
)
@pytest.mark.allow_warnings(NOT_FETCHED)
def test_the_wecom_ai_bot_takes_any_encrypted_callback(server: Server, inner: bytes) -> None:
    stamp, nonce = fresh()
    encrypt = TencentCrypto(BOT_AES_KEY, "").encrypt(inner)
    query = {"msg_signature": sign("bot-token", stamp, nonce, encrypt), "timestamp": stamp,
             "nonce": nonce}  # fmt: skip
    no_5xx(server.post("/wecom/bot", json.dumps({"encrypt": encrypt}).encode(), query=query))


@EXAMPLES
@given(st.sampled_from(["/wechat", "/wecom", "/wecom/bot"]), st.binary(max_size=60))
def test_url_verification_takes_any_signed_echostr(server: Server, path: str, echo: bytes) -> None:
    stamp, nonce = fresh()
    if path == "/wechat":
        text = echo.decode("latin-1")
        query = {"signature": sign(TOKEN, stamp, nonce), "echostr": text}
    else:
        token, key, receiver = (
            (TOKEN, AES_KEY, server.api.corp_id)
            if path == "/wecom"
            else ("bot-token", BOT_AES_KEY, "")
        )
        encrypted = TencentCrypto(key, receiver).encrypt(echo)
        query = {"msg_signature": sign(token, stamp, nonce, encrypted), "echostr": encrypted}
    response = server.http.get(
        server.url + path, params={**query, "timestamp": stamp, "nonce": nonce}
    )
    no_5xx(response.status_code)
