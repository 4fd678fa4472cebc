"""``difybot chat``: the core with the terminal as its one platform."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from adapters.console.chat import PLATFORM, WORKSPACE, ConsoleChat, run_console
from bot.models import ConversationKey
from difybot.config import CoreSettings
from difybot.wiring import Core, build_core, register


async def chat(settings: CoreSettings) -> int:
    core = await build_core(settings, dify_required=True)
    try:
        console = ConsoleChat.of_process(core.inbox)
        console.continued = await _last_used(core, console.key)
        register(core, console.platform())
        core.inbox.start()  # the load gauge, and the prune of day-old journal entries
        return await run_console(console)
    finally:
        await core.close()


async def _last_used(core: Core, key: ConversationKey) -> datetime | None:
    """When the stored conversation the terminal continues was last used (None: none stored)."""
    key = replace(key, app=core.inbox.routing.resolve(PLATFORM, workspace=WORKSPACE).app)
    if not await core.store.get(key):
        return None
    found = await core.store.list(platform=PLATFORM, scope_id=key.scope_id, app=key.app, limit=1)
    return found[0].updated_at if found else None
