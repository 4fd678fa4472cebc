"""The Dify apps of a deployment by route name, and what each app offers around its answers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bot.dify.client import DifyClient
from bot.errors import DifyError
from bot.models import AppFacts
from bot.routing import DEFAULT_APP

log = logging.getLogger(__name__)

FACTS_TTL = 300.0  # seconds an app's /parameters answer is trusted


@dataclass
class DifyApps:
    """Clients by route name (``default`` is DIFY_API_KEY's app) and their connection pools,
    one per API base. ``facts`` reads each app's ``GET /parameters`` at most every
    ``FACTS_TTL`` seconds; an unreachable Dify gives the last answer, or nothing."""

    default: DifyClient
    extra: dict[str, DifyClient] = field(default_factory=dict)
    pools: dict[str, httpx.AsyncClient] = field(default_factory=dict)  # by API base
    clock: Callable[[], float] = time.monotonic
    _facts: dict[str, tuple[float, AppFacts]] = field(default_factory=dict)

    @property
    def by_name(self) -> dict[str, DifyClient]:
        return {DEFAULT_APP: self.default, **self.extra}

    def client(self, app: str) -> DifyClient:
        """The app of a route name (an unknown name, e.g. a route since removed: the default)."""
        return self.extra.get(app, self.default)

    async def facts(self, app: str = DEFAULT_APP) -> AppFacts:
        cached = self._facts.get(app)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        try:
            async with asyncio.timeout(10):
                parameters = await self.client(app).parameters()
        except (DifyError, TimeoutError) as exc:
            log.warning("could not read the parameters of Dify app %s: %s", app, exc)
            return cached[1] if cached is not None else AppFacts()
        facts = to_facts(parameters)
        self._facts[app] = (self.clock() + FACTS_TTL, facts)
        return facts

    async def aclose(self) -> None:
        for client in self.by_name.values():
            await client.settle()
        for pool in self.pools.values():
            await pool.aclose()


def to_facts(parameters: dict[str, Any]) -> AppFacts:
    after = parameters.get("suggested_questions_after_answer") or {}
    return AppFacts(
        opening_statement=str(parameters.get("opening_statement") or "").strip(),
        starter_questions=tuple(str(q) for q in parameters.get("suggested_questions") or () if q),
        suggestions_after_answer=bool(isinstance(after, dict) and after.get("enabled")),
    )
