"""Which Dify app answers a message, and in which language the bot speaks: the routing table.

The core applies it once per message (``Routing.apply``), from what the adapter filled in
(platform, workspace, channel, slash command, the user's own locale); the routes file
(``difybot.routes_file``) fills the table. Routes are tried in file order and the first whose
given fields all match wins; no match means the default app.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from bot.models import ConversationKey, IncomingMessage

DEFAULT_APP = "default"
LOCALES = frozenset({"en", "ja", "zh"})
# What a message can tell an app's ``inputs``: the context field names a routes file may use.
CONTEXT_FIELDS = frozenset({"user_name", "user_id", "channel", "platform", "locale", "workspace"})


@dataclass(frozen=True, slots=True)
class AppSpec:
    """One Dify app. The default app's key and base come from DIFY_API_KEY / DIFY_API_BASE."""

    name: str
    api_key: str = field(default="", repr=False)  # read from the variable ``api_key_env``
    api_key_env: str = ""
    api_base: str = ""  # "" = DIFY_API_BASE
    mode: str = ""  # "" = read from /info
    locale: str = ""
    inputs: Mapping[str, str] = field(default_factory=dict)  # Dify variable -> context field
    approvers: frozenset[str] = frozenset()  # platform user ids who may answer its forms
    line: int = 0
    input_lines: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Route:
    """Messages matching every non-empty field go to ``app``."""

    app: str
    platform: str
    workspace: str = ""
    channel: str = ""
    command: str = ""
    locale: str = ""
    line: int = 0

    def matches(self, platform: str, workspace: str, channel: str, command: str) -> bool:
        wanted = (self.platform, self.workspace, self.channel, self.command)
        given = (platform, workspace, channel, command)
        return all(not want or want == have for want, have in zip(wanted, given, strict=True))


@dataclass(frozen=True, slots=True)
class Routed:
    """Where a message goes: the app's route name and the locale for the bot's own texts."""

    app: str
    locale: str | None


@dataclass(frozen=True, slots=True)
class Routing:
    """The routing table: apps by name (the default included) and the routes to them."""

    apps: Mapping[str, AppSpec] = field(default_factory=lambda: {DEFAULT_APP: AppSpec(DEFAULT_APP)})
    routes: Sequence[Route] = ()
    source: str = ""  # the routes file, for messages

    def resolve(
        self, platform: str, *, workspace: str = "", channel: str = "", command: str = ""
    ) -> Routed:
        for route in self.routes:
            if route.matches(platform, workspace, channel, command):
                spec = self.apps[route.app]
                return Routed(route.app, route.locale or spec.locale or None)
        return Routed(DEFAULT_APP, self.apps[DEFAULT_APP].locale or None)

    def apply(self, message: IncomingMessage) -> IncomingMessage:
        """The message keyed to its app, its locale the user's own (when the platform told
        us), else the route's, else the app's, else the platform's default."""
        routed = self.resolve(
            message.platform,
            workspace=message.workspace,
            channel=message.channel_id or "",
            command=message.command,
        )
        locale = message.user_locale or routed.locale or message.locale
        key = replace(message.key, app=routed.app)
        return replace(message, key=key, locale=locale)

    def commands(self, platform: str) -> list[str]:
        """The slash commands routes name on ``platform``, in file order, once each."""
        named = (r.command for r in self.routes if r.platform == platform and r.command)
        return list(dict.fromkeys(named))

    @property
    def extra_apps(self) -> list[AppSpec]:
        """Every app but the default (each needs its own Dify client)."""
        return [spec for name, spec in self.apps.items() if name != DEFAULT_APP]


def under_every_app(key: ConversationKey, apps: Iterable[str]) -> list[ConversationKey]:
    """The key under its own app, the default app and each of ``apps``: for buttons and
    commands that do not know which app a conversation runs under."""
    names = dict.fromkeys((key.app, DEFAULT_APP, *apps))
    return [replace(key, app=name) for name in names]


def context_value(message: IncomingMessage, name: str) -> str | None:
    """One context field of a message, for an app's ``inputs`` (None when unknown)."""
    values = {
        "user_name": message.user_name,
        "user_id": message.author,
        "channel": message.channel_id,
        "platform": message.platform,
        "locale": message.locale,
        "workspace": message.workspace,
    }
    return values.get(name) or None
