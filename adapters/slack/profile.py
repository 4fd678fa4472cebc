"""What the Dify app offers around answers (opening statement, suggestions), cached briefly."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.dify.client import DifyClient
from bot.errors import DifyError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Profile:
    opening_statement: str = ""
    starter_questions: tuple[str, ...] = ()
    suggestions_after_answer: bool = False


class AppProfile:
    """``GET /parameters`` at most every ``ttl`` seconds; an unreachable Dify means "nothing"."""

    def __init__(
        self, dify: DifyClient, *, ttl: float = 300.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._dify = dify
        self._ttl = ttl
        self._clock = clock
        self._cached: Profile | None = None
        self._expires = 0.0

    async def get(self) -> Profile:
        if self._cached is not None and self._clock() < self._expires:
            return self._cached
        try:
            params = await self._dify.parameters()
        except DifyError as exc:
            log.warning("could not read the Dify app parameters: %s", exc)
            return self._cached or Profile()
        after = params.get("suggested_questions_after_answer") or {}
        self._cached = Profile(
            opening_statement=str(params.get("opening_statement") or "").strip(),
            starter_questions=tuple(str(q) for q in params.get("suggested_questions") or () if q),
            suggestions_after_answer=bool(isinstance(after, dict) and after.get("enabled")),
        )
        self._expires = self._clock() + self._ttl
        return self._cached
