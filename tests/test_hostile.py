"""Hostile input on every route: forged, replayed, truncated, re-encoded, oversize, malformed."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
from pathlib import Path

import aiohttp
import pytest
from slack_sdk.signature import SignatureVerifier

from tests.fakes.dify import FakeDify
from tests.fakes.slack_bot import SIGNING_SECRET, SlackBot, slack_bot
from tests.fakes.slack_payloads import dm
from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_app import AES_KEY, difybot, wechat_settings, wecom_settings


async def send(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, float]:
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=io.BytesIO(body), headers=headers or {}) as response,
    ):
        await response.read()
        return response.status, time.perf_counter() - started


def slack_headers(
    body: bytes, *, stamp: int | None = None, secret: str = SIGNING_SECRET
) -> dict[str, str]:
    timestamp = str(stamp if stamp is not None else int(time.time()))
    # Slack's v0 scheme over the raw bytes (slack-sdk's helper would insist on UTF-8 first).
    mac = hmac.new(secret.encode(), b"v0:" + timestamp.encode() + b":" + body, hashlib.sha256)
    signature = "v0=" + mac.hexdigest()
    if body.isascii():  # and agrees with slack-sdk's own signing where it can sign
        assert signature == SignatureVerifier(secret).generate_signature(
            timestamp=timestamp, body=body.decode()
        )
    return {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


async def refused_without_effect(bot: SlackBot, body: bytes, headers: dict[str, str]) -> None:
    status, _ = await send(f"{bot.web_url}/slack/events", body, headers)
    assert status == 401
    assert bot.dify.requests_to("/chat-messages") == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_slack_requests_that_slack_did_not_sign_as_sent_are_refused(
    tmp_path: Path,
) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        event = dm("sneaky", ts="1700000090.000090")
        compact = json.dumps(event, separators=(",", ":")).encode()
        # Replayed: a genuine signature from more than five minutes ago.
        await refused_without_effect(
            bot, compact, slack_headers(compact, stamp=int(time.time()) - 301)
        )
        # Truncated: signed whole, delivered cut.
        await refused_without_effect(bot, compact[:-20], slack_headers(compact))
        # Re-encoded: the same JSON re-serialized after signing.
        spaced = json.dumps(event, indent=1).encode()
        await refused_without_effect(bot, spaced, slack_headers(compact))
        # Forged with the wrong secret, and with no signature at all.
        await refused_without_effect(bot, compact, slack_headers(compact, secret="guess"))
        await refused_without_effect(bot, compact, {"Content-Type": "application/json"})
        # The genuine request still works afterwards.
        status, _ = await send(f"{bot.web_url}/slack/events", compact, slack_headers(compact))
        assert status == 200
        await bot.answered()


@pytest.mark.allow_warnings(r"^Unhandled request")
async def test_signed_but_malformed_slack_bodies_get_4xx_and_nothing_breaks(
    tmp_path: Path,
) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        for body in (b"{not json", b"[]", b'{"type": "event_callback"}', b"\xff\xfe\x00"):
            status, _ = await send(f"{bot.web_url}/slack/events", body, slack_headers(body))
            assert 400 <= status < 500, body
        assert bot.dify.requests_to("/chat-messages") == []
        status, _ = await bot.http_event(dm("still fine", ts="1700000091.000091"))
        assert status == 200
        await bot.answered()


@pytest.mark.allow_warnings("cannot reach Slack at start")
async def test_oversize_bodies_are_refused_cheaply_on_every_route(tmp_path: Path) -> None:
    big = b"x" * (2 * 1024 * 1024)
    async with FakeDify() as dify, FakeWeChatAPI() as api:
        settings = {
            **wechat_settings(api, wechat_encoding_aes_key=AES_KEY),
            **wecom_settings(api),
            "slack_bot_token": "xoxb-test-token",
            "slack_signing_secret": SIGNING_SECRET,
        }
        async with difybot(dify, tmp_path / "db", **settings) as bot:
            # Headers and parameters in the signed shape, with a current timestamp, get every
            # route past its cheap checks, as far as the body.
            now = int(time.time())
            query = f"?signature=0&msg_signature=0&timestamp={now}&nonce=1&encrypt_type=aes"
            headers = {**slack_headers(b""), "Content-Type": "application/octet-stream"}
            for route in ("/slack/events", "/wechat", "/wecom", "/wecom/bot"):
                status, seconds = await send(f"{bot.url}{route}{query}", big, headers)
                assert status == 413, route
                assert seconds < 0.5, route
            async with aiohttp.ClientSession() as session, session.get(f"{bot.url}/healthz") as r:
                assert r.status == 200
        assert dify.requests_to("/chat-messages") == [] and api.calls == []
