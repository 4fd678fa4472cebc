"""``difybot check`` against the fakes: a good setup passes line by line; each broken piece is
one ✗ line that says what to fix. Also the command itself, in a subprocess, text and JSON."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from adapters.slack.check import MANIFEST_SCOPES
from difybot.checks import Check, run_checks
from difybot.config import CoreSettings as Settings
from difybot.config import load_settings
from difybot.platforms import PLATFORMS
from storage.db import create_engine
from storage.migrate import upgrade
from tests.fakes.dify import FakeDify
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack, SlackCall
from tests.fakes.wechat import FakeWeChatAPI
from tests.test_cli_e2e import REPO, clean_env, difybot

ROUTES = """\
apps:
  sales:
    api_key_env: SALES_DIFY_KEY
    api_base: {base}
"""


@dataclass
class Fakes:
    dify: FakeDify
    sales: FakeDify
    slack: FakeSlack
    wechat: FakeWeChatAPI
    database: str
    routes: Path

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "dify_api_key": self.dify.api_key, "dify_api_base": self.dify.base_url,
            "database_url": self.database, "routes_file": str(self.routes),
            "slack_bot_token": BOT_TOKEN, "slack_app_token": APP_TOKEN,
            "slack_api_url": self.slack.url, "wechat_token": "wechat-token",
            "wechat_app_id": self.wechat.app_id, "wechat_app_secret": self.wechat.app_secret,
            "wechat_api_base": self.wechat.url, "wecom_token": "wecom-token",
            "wecom_corp_id": self.wechat.corp_id, "wecom_agent_id": "1000002",
            "wecom_secret": self.wechat.corp_secret, "wecom_api_base": self.wechat.url,
            "wecom_encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        }  # fmt: skip
        return load_settings(**{**values, **overrides})


def grant(scopes: set[str] | frozenset[str]) -> Any:
    def add_header(call: SlackCall, response: web.Response) -> None:
        if call.method == "auth.test":
            response.headers["x-oauth-scopes"] = ",".join(sorted(scopes))

    return add_header


@pytest.fixture
async def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Fakes]:
    monkeypatch.setenv("SALES_DIFY_KEY", "app-sales-key")
    database = f"sqlite+aiosqlite:///{tmp_path}/difybot.db"
    engine = create_engine(database)
    await upgrade(engine)
    await engine.dispose()
    async with (
        FakeDify() as dify,
        FakeDify(api_key="app-sales-key", mode="workflow") as sales,
        FakeSlack() as slack,
        FakeWeChatAPI() as wechat,
    ):
        slack.on_call = grant(MANIFEST_SCOPES | {"users:read"})
        routes = tmp_path / "routes.yml"
        routes.write_text(ROUTES.format(base=sales.base_url), encoding="utf-8")
        yield Fakes(dify, sales, slack, wechat, database, routes)


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


async def test_a_good_setup_passes_every_check(fakes: Fakes) -> None:
    checks = await run_checks(fakes.settings())
    assert [c.name for c in checks] == [
        "routes file", "Dify app default", "Dify app sales", "database", "Slack bot token",
        "Slack scopes", "Slack Socket Mode", "WeChat Official Account", "WeCom app",
    ]  # fmt: skip
    assert all(check.ok for check in checks), [c for c in checks if not c.ok]
    found = by_name(checks)
    assert "(workflow)" in found["Dify app sales"].detail
    assert "all 9 of manifest.yml granted" in found["Slack scopes"].detail
    assert fakes.sales.requests_to("/info") and fakes.sales.requests_to("/parameters")


async def test_each_broken_piece_is_one_failed_line_with_its_fix(
    fakes: Fakes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALES_DIFY_KEY", "app-wrong-key")
    fakes.slack.on_call = grant({"chat:write", "commands"})
    settings = fakes.settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db",
        wechat_app_secret="not-the-secret",
        slack_app_token="xapp-not-the-token",
    )
    found = by_name(await run_checks(settings))
    failed = {name for name, check in found.items() if not check.ok}
    assert failed == {"Dify app sales", "database", "Slack scopes", "Slack Socket Mode",
                      "WeChat Official Account"}  # fmt: skip
    assert "SALES_DIFY_KEY" in found["Dify app sales"].fix
    assert "difybot db upgrade" in found["database"].fix
    assert "app_mentions:read" in found["Slack scopes"].detail
    assert "reinstall" in found["Slack scopes"].fix
    assert "SLACK_APP_TOKEN" in found["Slack Socket Mode"].fix
    assert "40125" in found["WeChat Official Account"].detail
    assert "WECHAT_APP_SECRET" in found["WeChat Official Account"].fix


async def test_a_broken_routes_file_and_an_unreachable_dify(fakes: Fakes) -> None:
    fakes.routes.write_text("routes:\n  - {platform: slack, app: nope}\n", encoding="utf-8")
    await fakes.dify.close()
    no_platforms = {name: None for spec in PLATFORMS for name in spec.credentials.names}
    found = by_name(await run_checks(fakes.settings(**no_platforms)))
    assert not found["routes file"].ok
    assert "routes.yml:2: route: no app named 'nope'" in found["routes file"].detail
    assert not found["Dify app default"].ok
    assert "DIFY_API_BASE" in found["Dify app default"].fix
    assert found["database"].ok


def test_manifest_scopes_are_the_ones_check_expects() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text(encoding="utf-8"))
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == MANIFEST_SCOPES


async def test_the_check_command_prints_one_line_each_and_json(tmp_path: Path) -> None:
    async with FakeDify() as dify:
        env = clean_env(tmp_path, DIFY_API_KEY=dify.api_key, DIFY_API_BASE=dify.base_url)
        proc = await difybot("check", env=env, cwd=tmp_path)
        out, err = await asyncio.wait_for(proc.communicate(b""), 30)
        assert proc.returncode == 1, err.decode()  # the database is not migrated yet
        lines = out.decode().splitlines()
        assert lines[0].startswith("✓ Dify app default: ") and "advanced-chat" in lines[0]
        assert lines[1].startswith("✗ database: ") and "→ fix: run `difybot db upgrade`" in lines[1]
        upgrade = await difybot("db", "upgrade", env=env, cwd=tmp_path)
        await asyncio.wait_for(upgrade.communicate(b""), 30)
        proc = await difybot("check", "--json", env=env, cwd=tmp_path)
        out, err = await asyncio.wait_for(proc.communicate(b""), 30)
        assert proc.returncode == 0, err.decode()
        report = json.loads(out)
        assert report["ok"] is True
        assert [check["name"] for check in report["checks"]] == ["Dify app default", "database"]
        assert dify.api_key not in out.decode() + err.decode()
