"""The routes file (YAML) read into a ``Routing``, with every mistake reported at its line.

    apps:
      support:
        api_key_env: SUPPORT_DIFY_API_KEY   # the variable holding the key, never the key
        api_base: https://dify.example.com/v1
        locale: ja
        inputs: {asker: user_name, room: channel}
    routes:
      - {platform: slack, channel: C0123456789, app: support}
      - {platform: slack, command: /support, app: support}
      - {platform: wechat, app: support}

PyYAML's node tree (``yaml.compose``) keeps each value's line; plain ``safe_load`` would not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from bot.dify.client import MODES
from bot.errors import ConfigError
from bot.routing import CONTEXT_FIELDS, DEFAULT_APP, LOCALES, AppSpec, Route, Routing
from difybot.platforms import platform_names

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_APP_KEYS = frozenset({"api_key_env", "api_base", "mode", "locale", "inputs", "approvers"})
_DEFAULT_KEYS = frozenset({"locale", "inputs", "approvers"})
_ROUTE_KEYS = frozenset({"app", "platform", "workspace", "channel", "command", "locale"})


class RoutesError(ConfigError):
    """The routes file is wrong; the message has one ``file:line: problem`` per mistake."""


class _Reader:
    """Walks the node tree, collecting problems instead of stopping at the first."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[str] = []

    def fail(self, node: yaml.Node | None, problem: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.source}:{line}: {problem}")

    def mapping(self, node: yaml.Node, what: str, allowed: frozenset[str]) -> dict[str, Any]:
        """A mapping's scalar keys to their value nodes; wrong shapes and keys reported."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping")
            return {}
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in found:
                self.fail(key_node, f"{what}: {key!r} is given twice")
            elif allowed and key not in allowed:
                choices = ", ".join(sorted(allowed))
                self.fail(key_node, f"{what}: unknown key {key!r} (expected one of: {choices})")
            else:
                found[key] = value_node
        return found

    def text(self, node: yaml.Node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.value is None:
            self.fail(node, f"{what} must be a single value")
            return ""
        return str(node.value).strip()

    def choice(self, node: yaml.Node, what: str, choices: frozenset[str]) -> str:
        value = self.text(node, what)
        if value and value not in choices:
            self.fail(node, f"{what}: {value!r} is not one of {', '.join(sorted(choices))}")
        return value


def parse_routes(text: str, *, source: str, environ: Mapping[str, str]) -> Routing:
    """The routing table of a routes file; RoutesError listing every mistake otherwise."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else 1
        raise RoutesError(f"{source}:{line}: not valid YAML: {exc.problem}") from None
    reader = _Reader(source, environ)
    top = reader.mapping(root, "the routes file", frozenset({"apps", "routes"})) if root else {}
    apps = _apps(reader, top.get("apps"))
    routes = _routes(reader, top.get("routes"), apps)
    if reader.problems:
        raise RoutesError("\n".join(reader.problems))
    return Routing(apps=apps, routes=tuple(routes), source=source)


def _apps(reader: _Reader, node: yaml.Node | None) -> dict[str, AppSpec]:
    apps = {DEFAULT_APP: AppSpec(DEFAULT_APP)}
    if node is None:
        return apps
    for name, spec_node in reader.mapping(node, "apps", frozenset()).items():
        if not _NAME.match(name):
            reader.fail(spec_node, f"app name {name!r}: use 1-32 of a-z, 0-9, '_' and '-'")
            continue
        apps[name] = _app(reader, name, spec_node)
    return apps


def _app(reader: _Reader, name: str, node: yaml.Node) -> AppSpec:
    is_default = name == DEFAULT_APP
    what = f"app {name!r}"
    if isinstance(node, yaml.MappingNode) and any(k.value == "api_key" for k, _ in node.value):
        reader.fail(node, f"{what}: never write a key here; name its variable with api_key_env")
    fields = reader.mapping(node, what, _DEFAULT_KEYS if is_default else _APP_KEYS)
    values = {k: reader.text(v, f"{what} {k}") for k, v in fields.items() if k != "inputs"}
    if "locale" in fields:
        reader.choice(fields["locale"], f"{what} locale", LOCALES)
    if "mode" in fields:
        reader.choice(fields["mode"], f"{what} mode", MODES)
    base = values.get("api_base", "")
    if base and not base.startswith(("http://", "https://")):
        reader.fail(fields["api_base"], f"{what} api_base must start with http:// or https://")
    inputs, lines = _inputs(reader, what, fields.get("inputs"))
    approvers = frozenset(u.strip() for u in values.get("approvers", "").split(",") if u.strip())
    spec = AppSpec(name, locale=values.get("locale", ""), inputs=inputs, input_lines=lines,
                   approvers=approvers, line=node.start_mark.line + 1)  # fmt: skip
    if is_default:
        return spec
    variable = values.get("api_key_env", "")
    key = reader.environ.get(variable, "").strip() if variable else ""
    if not variable:
        reader.fail(node, f"{what}: api_key_env is required (the variable holding its key)")
    elif not key:
        reader.fail(fields["api_key_env"], f"{what}: the variable {variable} is not set")
    return AppSpec(name, api_key=key, api_key_env=variable, api_base=base.rstrip("/"),
                   mode=values.get("mode", ""), locale=spec.locale, inputs=inputs,
                   approvers=approvers, line=spec.line, input_lines=lines)  # fmt: skip


def _inputs(
    reader: _Reader, what: str, node: yaml.Node | None
) -> tuple[dict[str, str], dict[str, int]]:
    if node is None:
        return {}, {}
    inputs: dict[str, str] = {}
    lines: dict[str, int] = {}
    for variable, source in reader.mapping(node, f"{what} inputs", frozenset()).items():
        inputs[variable] = reader.choice(source, f"{what} input {variable!r}", CONTEXT_FIELDS)
        lines[variable] = source.start_mark.line + 1
    return inputs, lines


def _routes(reader: _Reader, node: yaml.Node | None, apps: Mapping[str, AppSpec]) -> list[Route]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        reader.fail(node, "routes must be a list")
        return []
    return [route for item in node.value if (route := _route(reader, item, apps)) is not None]


def _route(reader: _Reader, node: yaml.Node, apps: Mapping[str, AppSpec]) -> Route | None:
    fields = reader.mapping(node, "route", _ROUTE_KEYS)
    if not fields:
        return None
    values = {k: reader.text(v, f"route {k}") for k, v in fields.items()}
    app, platform, command = values.get("app"), values.get("platform"), values.get("command", "")
    if not app:
        reader.fail(node, "route: app is required")
    elif app not in apps:
        reader.fail(fields["app"], f"route: no app named {app!r} under apps")
    if not platform:
        reader.fail(node, f"route: platform is required ({', '.join(sorted(platform_names()))})")
    else:
        reader.choice(fields["platform"], "route platform", platform_names())
    if command and (platform != "slack" or not command.startswith("/")):
        reader.fail(fields["command"], "route: command is a Slack slash command, like /ask")
    if "locale" in fields:
        reader.choice(fields["locale"], "route locale", LOCALES)
    return Route(app=app or DEFAULT_APP, platform=platform or "", line=node.start_mark.line + 1,
                 workspace=values.get("workspace", ""), channel=values.get("channel", ""),
                 command=command, locale=values.get("locale", ""))  # fmt: skip
