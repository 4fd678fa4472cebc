"""Answer splitting, bot texts, settings and the secret log filter."""

from __future__ import annotations

import errno
import logging
import socket
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.dify.client import MODES
from bot.errors import REFUSED, TIMEOUT, UNKNOWN_HOST, ConfigError, connection_reason
from bot.ops.logs import REDACTED, SecretFilter
from bot.text import split_text, utf8_length
from bot.texts import Texts
from difybot.cli import PLATFORM_NAMES
from difybot.config import (
    AppMode,
    Settings,
    load_settings,
    unknown_variables,
)
from difybot.platforms import PLATFORMS, platform_names

# ---- split_text ------------------------------------------------------------------------------


def test_short_text_is_one_part() -> None:
    assert split_text("hello", 100) == ["hello"]
    assert split_text("", 100) == [""]


def test_splits_at_paragraphs_first() -> None:
    text = "First paragraph is here.\n\nSecond paragraph is here.\n\nThird one."
    parts = split_text(text, 30)
    assert parts == ["First paragraph is here.", "Second paragraph is here.", "Third one."]
    assert split_text(text, 40)[1] == "Second paragraph is here.\n\nThird one."


def test_splits_at_sentences_when_a_paragraph_is_too_long() -> None:
    text = "One sentence here. Another sentence there. A third sentence ends it."
    parts = split_text(text, 45)
    assert parts[0] == "One sentence here. Another sentence there."
    assert all(len(p) <= 45 for p in parts)
    assert " ".join(parts) == text


def test_cjk_sentences_and_utf8_bytes() -> None:
    text = "这是第一句话。" * 200 + "最后一句！"
    parts = split_text(text, 2048, measure=utf8_length)
    assert all(utf8_length(p) <= 2048 for p in parts)
    assert all(p.endswith(("。", "！")) for p in parts)
    assert "".join(parts) == text


def test_code_fence_cut_in_two_is_closed_and_reopened() -> None:
    code = "\n".join(f"line_{i} = {i}" for i in range(40))
    text = f"Intro.\n\n```python\n{code}\n```\n\nOutro."
    parts = split_text(text, 200)
    assert len(parts) > 2
    for part in parts:
        assert part.count("```") % 2 == 0, part
        assert len(part) <= 200
    assert all(p.startswith("```python\n") for p in parts[2:])


def test_inline_fence_does_not_break_splitting() -> None:
    parts = split_text("see ``` here " + "y" * 300, 100)
    assert all(len(p) <= 100 for p in parts)


def test_hard_cut_when_there_is_no_boundary() -> None:
    parts = split_text("x" * 250, 100)
    assert [len(p) for p in parts] == [100, 100, 50]


@given(st.text(min_size=1, max_size=3000), st.integers(min_value=16, max_value=600))
def test_split_never_exceeds_the_limit_and_keeps_the_words(text: str, limit: int) -> None:
    parts = split_text(text, limit, measure=utf8_length)
    assert all(utf8_length(p) <= limit for p in parts)
    kept = "".join("".join(parts).split()).replace("```", "")
    assert kept == "".join(text.split()).replace("```", "")


# ---- texts -------------------------------------------------------------------------------------


def test_texts_by_locale_with_overrides_and_fallback() -> None:
    texts = Texts("ja", {"busy": "Hold on!"})
    assert texts.get("busy") == "Hold on!"
    assert texts.get("error", "zh-CN").startswith("抱歉")
    assert texts.get("error", "en_US").startswith("Sorry")
    assert texts.get("error", "fr") == texts.get("error", "ja")
    assert Texts("xx").get("reset") == "Started a new conversation."


# ---- settings ------------------------------------------------------------------------------------


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFY_API_KEY", "app-abcdef123456")
    monkeypatch.setenv("DIFY_API_BASE", "http://localhost:5001/v1/")
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("BOT_TEXTS", '{"busy": "wait"}')
    settings = load_settings(_env_file=None)
    assert settings.dify_base == "http://localhost:5001/v1"
    assert settings.port == 9000
    assert settings.bot_texts == {"busy": "wait"}
    assert "app-abcdef123456" not in repr(settings)
    assert settings.secrets() == ["app-abcdef123456"]


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIFY_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"^DIFY_API_KEY: is required$"):
        load_settings(_env_file=None)


def test_malformed_values_name_the_variable_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIFY_API_KEY", "app-x")
    monkeypatch.setenv("PORT", "eighty")
    monkeypatch.setenv("DIFY_API_BASE", "not a url")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert "PORT:" in message and "DIFY_API_BASE:" in message
    assert "eighty" not in message


def test_an_empty_credential_is_unset_and_a_partial_set_names_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIFY_API_KEY", "app-x")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "")  # as a copied .env.example leaves it
    assert load_settings(_env_file=None).slack_bot_token is None
    monkeypatch.setenv("WECHAT_APP_SECRET", "oa-secret")
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    assert str(caught.value) == (
        "the WeChat Official Account is half configured: WECHAT_APP_SECRET is set, but not "
        "WECHAT_TOKEN nor WECHAT_APP_ID; set those too, or unset WECHAT_APP_SECRET to leave it off"
    )


def test_every_credential_and_name_list_matches_its_source() -> None:
    fields = set(Settings.model_fields)
    assert all(set(spec.credentials.names) <= fields for spec in PLATFORMS)
    assert set(get_args(AppMode)) == MODES | {""}
    assert set(PLATFORM_NAMES) == platform_names()


def test_unknown_variables_are_those_that_look_like_settings() -> None:
    found = unknown_variables(
        {"SLAK_BOT_TOKEN": "", "WECHAT_APPID": "", "HOME": "", "LANG": "", "DIFYBOT_PORT": "",
         "PORT": "", "SUPPORT_DIFY_API_KEY": "", "DIFY_SALES_KEY": ""},
        allowed=frozenset({"DIFY_SALES_KEY"}),  # a routes file's api_key_env
    )  # fmt: skip
    assert found == [("SLAK_BOT_TOKEN", "SLACK_BOT_TOKEN"), ("WECHAT_APPID", "WECHAT_APP_ID")]


@pytest.mark.parametrize(
    ("chain", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), REFUSED),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), UNKNOWN_HOST),
        (TimeoutError(), TIMEOUT),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), "no route to host"),
        (ValueError("nothing about a connection"), ""),
    ],
)
def test_a_connection_failure_is_named_from_deep_in_its_cause_chain(
    chain: BaseException, reason: str
) -> None:
    outer = RuntimeError("ConnectTimeout")  # what a transport may claim on top
    outer.__cause__ = OSError("Cannot connect to host")
    outer.__cause__.__cause__ = chain
    assert connection_reason(outer) == reason


# ---- secret filter ---------------------------------------------------------------------------


@pytest.mark.allow_warnings(r"^failed$")
def test_secret_filter_scrubs_messages_args_and_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.secrets")
    logger.addFilter(SecretFilter(["xoxb-very-secret", "short"]))
    try:
        with caplog.at_level(logging.INFO, logger="test.secrets"):
            logger.info("token is %s", "xoxb-very-secret")
            try:
                raise RuntimeError("boom with xoxb-very-secret inside")
            except RuntimeError:
                logger.exception("failed")
    finally:
        logger.filters.clear()
    text = caplog.text
    assert "xoxb-very-secret" not in text
    assert text.count(REDACTED) >= 2
