"""Metrics scraped from GET /metrics while the real app answers, and JSON log lines that carry
each answer's trace id (the one Dify received as X-Trace-Id)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.ops.logs import REDACTED, build_handler
from bot.ops.metrics import Metrics
from storage.units import Database
from tests.fakes.dify import FakeDify
from tests.fakes.dify_behaviours import Answer, HttpError
from tests.fakes.slack_bot import slack_bot
from tests.fakes.slack_payloads import dm
from tests.test_reliability import ResumableReply, accept, make_dispatcher, message

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.mark.allow_warnings(r"type=DifyHTTPError")
async def test_metrics_count_messages_answers_errors_and_platform_calls(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.slack.rate_limit("chat.postMessage", times=1, retry_after=0)
        await bot.event(dm("one", ts="1700000001.000001"))
        await bot.answered(1)
        bot.dify.enqueue("/chat-messages", HttpError(400, "invalid_param", "Bad inputs"))
        await bot.event(dm("two", ts="1700000002.000002"))
        await bot.answered(2)
        samples = await scrape(bot.web_url)
    slack = {"platform": "slack", "app": "default"}
    assert value(samples, "difybot_messages_total", **slack) == 2
    assert value(samples, "difybot_answers_completed_total", **slack) == 1
    assert value(samples, "difybot_answers_failed_total", **slack, reason="error") == 1
    assert value(samples, "difybot_time_to_first_token_seconds_count", **slack) == 1
    assert value(samples, "difybot_answer_duration_seconds_count", **slack) == 2
    assert value(samples, "difybot_answers_in_flight") == 0
    errors = {"app": "default", "status": "400", "code": "invalid_param"}
    assert value(samples, "difybot_dify_http_errors_total", **errors) == 1
    posts = {"platform": "slack", "method": "chat.postMessage"}
    assert value(samples, "difybot_platform_api_calls_total", **posts) >= 3  # a 429, 2 posts
    assert value(samples, "difybot_platform_rate_limited_total", **posts) == 1


async def test_duplicates_and_takeovers_are_counted(db: Database) -> None:
    async with FakeDify() as dify:
        restored: list[ResumableReply] = []
        a = make_dispatcher(dify, db, "replica-a", restored, lease=2.0)
        b = make_dispatcher(dify, db, "replica-b", restored, lease=2.0)
        try:
            task = await accept(a, message("hello", "C1:1.1"), ResumableReply())
            assert await accept(b, message("hello", "C1:1.1"), ResumableReply()) is None
            await task
            dify.enqueue("/chat-messages", Answer(chunks=["slow"] * 20, delay=0.2))
            await accept(a, message("long", "C1:1.2"), ResumableReply())
            await dify.wait_for("/chat-messages", 2)
            await a.close(grace=0.05)  # shutting down hands the answer over
            assert await b.inbox.take_over() == 1
            await asyncio.wait_for(b.inbox.idle(), 5)
        finally:
            for replica in (a, b):
                await replica.close()
                await replica.answerer.apps.default._http.aclose()
    registry = b.inbox.metrics.registry
    labels = {"platform": "test"}
    assert registry.get_sample_value("difybot_duplicate_deliveries_total", labels) == 1
    assert registry.get_sample_value("difybot_lease_takeovers_total", labels) == 1
    assert (
        registry.get_sample_value(
            "difybot_answers_completed_total", {"platform": "test", "app": "default"}
        )
        == 1
    )


async def test_json_logs_carry_the_trace_id_sent_to_dify(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = build_handler(["app-test-key"], fmt="json", stream=stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        async with slack_bot(tmp_path) as bot:
            await bot.event(dm("trace me", ts="1700000003.000003"))
            await bot.answered(1)
    finally:
        root.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (answered,) = [line for line in lines if line["message"].startswith("answered ")]
    (request,) = bot.dify.requests_to("/chat-messages")
    assert answered["trace_id"] == request.headers["x-trace-id"]
    assert answered["platform"] == "slack" and answered["app"] == "default"
    assert answered["outcome"] == "answered" and answered["chunks"] >= 1
    assert isinstance(answered["duration_ms"], int)
    assert answered["level"] == "INFO" and answered["logger"] == "bot.answering"


def test_json_lines_are_scrubbed_of_secrets_like_text_ones() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.json_secrets")
    logger.propagate = False  # the suite's own secret scan must not see this deliberate leak
    logger.addHandler(build_handler(["app-test-key"], fmt="json", stream=stream))
    try:
        logger.warning("key %s", "app-test-key")
        try:
            raise ValueError("app-test-key")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == f"key {REDACTED}" and "trace_id" not in first
    assert "app-test-key" not in second["exception"] and REDACTED in second["exception"]


def test_each_metrics_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.messages.labels("slack", "default").inc()
    assert (
        two.registry.get_sample_value(
            "difybot_messages_total", {"platform": "slack", "app": "default"}
        )
        is None
    )
    assert b"difybot_messages_total" in one.exposition()[0]
