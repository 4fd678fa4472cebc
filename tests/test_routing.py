"""The routes file: parsed into a routing table, every mistake reported at its line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.models import ConversationKey, IncomingMessage, Scope
from bot.routing import DEFAULT_APP, Routing
from difybot.config import load_routes, load_settings
from difybot.platforms import platform_names
from difybot.routes_file import RoutesError, parse_routes

ENV = {"SUPPORT_KEY": "app-support-key", "SALES_KEY": "app-sales-key"}

GOOD = """\
apps:
  default:
    locale: en
  support:
    api_key_env: SUPPORT_KEY
    api_base: https://dify.example.com/v1/
    locale: ja
    inputs:
      asker: user_name
      room: channel
  sales:
    api_key_env: SALES_KEY
    mode: workflow
routes:
  - {platform: slack, channel: C0SUPPORT, app: support}
  - {platform: slack, command: /sales, app: sales}
  - {platform: slack, workspace: T0SALES, app: sales, locale: zh}
  - {platform: wechat, app: support}
  - {platform: wecom_bot, workspace: bot1, channel: group9, app: sales}
"""


def message(platform: str = "slack", workspace: str = "T1", channel: str | None = "C1",
            locale: str | None = None) -> IncomingMessage:  # fmt: skip
    key = ConversationKey(platform, workspace, Scope.USER, "U1")
    return IncomingMessage(platform, workspace, "U1", "hi", key, "m1", channel_id=channel,
                           locale=locale)  # fmt: skip


def test_a_good_file_gives_apps_with_their_keys_and_routes_in_order() -> None:
    routing = parse_routes(GOOD, source="routes.yml", environ=ENV)
    assert [spec.name for spec in routing.extra_apps] == ["support", "sales"]
    support = routing.apps["support"]
    assert support.api_key == "app-support-key" and support.api_key_env == "SUPPORT_KEY"
    assert support.api_base == "https://dify.example.com/v1"
    assert dict(support.inputs) == {"asker": "user_name", "room": "channel"}
    assert support.input_lines == {"asker": 9, "room": 10}
    assert "app-support-key" not in repr(support)  # keys stay out of reprs and logs
    assert routing.apps["sales"].mode == "workflow"
    assert [route.line for route in routing.routes] == [15, 16, 17, 18, 19]
    assert routing.commands("slack") == ["/sales"]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"platform": "slack", "channel": "C0SUPPORT"}, ("support", "ja")),
        ({"platform": "slack", "channel": "C0SUPPORT", "command": "/sales"}, ("support", "ja")),
        ({"platform": "slack", "channel": "C9", "command": "/sales"}, ("sales", None)),
        ({"platform": "slack", "workspace": "T0SALES", "channel": "C9"}, ("sales", "zh")),
        ({"platform": "slack", "channel": "C9"}, ("default", "en")),
        ({"platform": "wechat", "workspace": "wx1"}, ("support", "ja")),
        ({"platform": "wecom_bot", "workspace": "bot1", "channel": "group9"}, ("sales", None)),
        ({"platform": "wecom_bot", "workspace": "bot1", "channel": "other"}, ("default", "en")),
    ],
)
def test_the_first_matching_route_wins(where: dict[str, str], expected: tuple[str, str]) -> None:
    routing = parse_routes(GOOD, source="routes.yml", environ=ENV)
    platform = where.pop("platform")
    routed = routing.resolve(platform, **where)
    assert (routed.app, routed.locale) == expected


def test_apply_keys_the_message_to_its_app_and_picks_the_language() -> None:
    routing = parse_routes(GOOD, source="routes.yml", environ=ENV)
    routed = routing.apply(message(channel="C0SUPPORT", locale="zh"))
    assert routed.key.app == "support" and routed.key.as_str().startswith("support/")
    assert routed.locale == "ja"  # the route's language over the adapter's default
    own = replace(message(channel="C0SUPPORT"), user_locale="en-US")
    assert routing.apply(own).locale == "en-US"
    assert routing.apply(replace(message(channel="C9"), command="/sales")).key.app == "sales"
    assert Routing().apply(message()).key.app == DEFAULT_APP  # no routes file: the default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apps:\n  x:\n    api_key: app-inline\n", "routes.yml:3: app 'x': never write a key"),
        ("apps:\n  x:\n    api_key_env: MISSING\n", "routes.yml:3: app 'x': the variable MISSING"),
        ("apps:\n  x:\n    mode: chat\n", "routes.yml:3: app 'x': api_key_env is required"),
        ("apps:\n  Bad Name:\n    api_key_env: SALES_KEY\n", "routes.yml:3: app name 'Bad Name'"),
        ("apps:\n  default:\n    api_key_env: SALES_KEY\n", "routes.yml:3: app 'default': unknown"),
        ("routes:\n  - {platform: slack, app: nope}\n", "routes.yml:2: route: no app named 'nope'"),
        ("routes:\n  - {platform: teams, app: default}\n", "routes.yml:2: route platform: 'teams'"),
        ("routes:\n  - app: default\n", "routes.yml:2: route: platform is required"),
        ("routes:\n  - {platform: wechat, command: /x, app: default}\n", "command is a Slack"),
        ("routes:\n  - {platform: slack, chanel: C1, app: default}\n", "unknown key 'chanel'"),
        ("routes:\n  - {platform: slack, locale: fr, app: default}\n", "route locale: 'fr'"),
        ("routes:\n  platform: slack\n", "routes.yml:2: routes must be a list"),
        ("apps:\n  default:\n    inputs: {who: email}\n", "routes.yml:3: app 'default' input"),
        ("apps: [\n", "routes.yml:2: not valid YAML"),
        ("apps: {}\napps: {}\n", "routes.yml:2: the routes file: 'apps' is given twice"),
    ],
)
def test_each_mistake_is_reported_at_its_line(text: str, expected: str) -> None:
    with pytest.raises(RoutesError) as raised:
        parse_routes(text, source="routes.yml", environ=ENV)
    assert expected in str(raised.value)
    assert "app-" not in str(raised.value).replace("app-inline", "")  # never a key's value


def test_every_mistake_is_reported_at_once() -> None:
    text = "routes:\n  - {platform: slack, app: nope}\n  - {platform: teams, app: default}\n"
    with pytest.raises(RoutesError) as raised:
        parse_routes(text, source="r.yml", environ=ENV)
    assert str(raised.value).splitlines() == [
        "r.yml:2: route: no app named 'nope' under apps",
        f"r.yml:3: route platform: 'teams' is not one of {', '.join(sorted(platform_names()))}",
    ]


def test_routes_file_setting_reads_the_file_and_the_named_variables(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text(GOOD, encoding="utf-8")
    settings = load_settings(dify_api_key="app-test-key", routes_file=str(path))
    assert load_routes(settings, environ=ENV).apps["sales"].api_key == "app-sales-key"
    assert load_routes(load_settings(dify_api_key="app-test-key")).routes == ()
    missing = load_settings(dify_api_key="app-test-key", routes_file=str(tmp_path / "no.yml"))
    with pytest.raises(ConfigError, match="ROUTES_FILE: cannot read"):
        load_routes(missing)
