"""HTTP mode (``POST /slack/events``): bolt's signature check, events, commands and buttons."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import click, command, dm


async def test_signed_event_is_acked_and_answered(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        status, _ = await bot.http_event(dm("over http", ts="1700000050.000050"))
        assert status == 200
        await bot.answered()
        assert bot.slack.messages.in_channel("D111")[0].body == "echo: over http"


async def test_forged_signature_is_refused(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        status, _ = await bot.http_event(dm("forged", ts="1700000051.000051"), secret="wrong")
        assert status == 401
        assert bot.dify.requests_to("/chat-messages") == []


async def test_url_verification_challenge(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        body = {"token": "x", "challenge": "abc123", "type": "url_verification"}
        status, text = await bot.http_event(body)
        assert status == 200 and "abc123" in text


async def test_slack_retry_of_a_handled_event_is_not_answered_again(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        body = dm("only once", ts="1700000052.000052")
        assert (await bot.http_event(body))[0] == 200
        retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        assert (await bot.http_event(body, headers=retry))[0] == 200
        await bot.http_event(dm("next", ts="1700000053.000053"))
        await bot.answered(2)
        assert [r.json["query"] for r in bot.dify.requests_to("/chat-messages")] == [
            "only once",
            "next",
        ]


async def test_command_and_button_over_http(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        status, text = await bot.http_form(command("help", channel="D111"))
        assert status == 200 and "/dify new" in text
        body = click("dify_stop", "user|U111", channel="D111", message_ts="1700000054.000054")
        status, _ = await bot.http_form({"payload": json.dumps(body)})
        assert status == 200
        await bot.slack.wait_for("chat.postEphemeral")


MALFORMED = [
    # Form bodies whose ``payload`` is not a JSON object (bolt json-loads it blindly).
    ("application/x-www-form-urlencoded", "payload=%7Bnot-json"),
    ("application/x-www-form-urlencoded", "payload=[]"),
    ("application/x-www-form-urlencoded", "payload=null"),
    ("application/x-www-form-urlencoded", 'payload={"type": "block_actions", "actions": "x"}'),
    # JSON bodies of the right type with the wrong shape inside.
    ("application/json", '{"type": "event_callback", "team_id": "T0001", "event": "message"}'),
    ("application/json", '{"type": "event_callback", "team_id": "T0001", "event": {"type": 5}}'),
    ("application/json", '{"type": "event_callback", "event": {"type": "message", "ts": []}}'),
    ("application/json", '{"type": "url_verification", "challenge": {"a": 1}}'),
    ("text/plain", "{not json but braces"),
]


async def test_signed_but_malformed_bodies_get_400_with_one_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with slack_bot(tmp_path, socket=False, http=True) as bot:
        for content_type, raw in MALFORMED:
            caplog.clear()
            with caplog.at_level(logging.INFO):
                status, _ = await bot.http(raw, content_type=content_type)
            assert status == 400, raw
            lines = [r for r in caplog.records if r.name.startswith(("adapters", "slack_bolt"))]
            assert len(lines) == 1 and lines[0].levelno == logging.INFO, raw
            assert not any(r.exc_info for r in caplog.records), raw
        assert bot.dify.requests_to("/chat-messages") == []
        status, _ = await bot.http_event(dm("still answered", ts="1700000055.000055"))
        assert status == 200
        await bot.answered()
