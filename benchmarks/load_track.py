"""What a person would see of each benchmark conversation: chunk write times against Web API calls.

Every answer chunk is ``t<index> `` and every answer shows all chunks so far, so the highest index
in a Slack call (``chat.update`` blocks, ``chat.appendStream`` deltas …) says what it shows.

Overhead samples are taken only where difybot may show the chunk at once, so the edit interval
(a deliberate delay) is not counted: the first text of an answer, the final answer (the closing
events follow the last chunk at once), and the first chunk after a pause longer than the interval.
Display lag is measured for every chunk and includes the interval.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MARKER = re.compile(r"t(\d{3,})")
VISIBLE = frozenset(
    {"chat.postMessage", "chat.update", "chat.startStream", "chat.appendStream", "chat.stopStream"}
)
# What tells a person their question was seen: any visible call, or the thread's status line.
SIGNS = VISIBLE | {"assistant.threads.setStatus"}
STOP_ACTION = "dify_stop"
MARGIN = 0.05  # seconds: slack for "the previous edit had returned" when judging a resumed chunk


@dataclass
class Conversation:
    total: int
    asked: float = math.nan
    written: list[float] = field(default_factory=list)
    shown: int = 0  # chunks a person sees
    last_text: float = math.nan  # arrival of the last call that showed new text
    visible: list[float] = field(default_factory=list)  # arrivals of accepted visible calls
    final: float | None = None
    sign: float | None = None  # the first sign of life (the benchmarks of delivery)

    def __post_init__(self) -> None:
        self.written = [math.nan] * self.total


class Tracker:
    def __init__(self, total: int, *, interval: float) -> None:
        self.total = total
        self.interval = interval
        self.conversations: dict[int, Conversation] = {}
        self.overhead: list[float] = []
        self.overhead_by_kind: dict[str, list[float]] = {}
        self.lag: list[float] = []
        self.calls = 0
        self.by_method: dict[str, int] = {}
        self.refused = 0
        self.finals = 0
        self.last_final: float | None = None
        self.on_final: Callable[[int], None] | None = None

    def _get(self, n: int) -> Conversation:
        conversation = self.conversations.get(n)
        if conversation is None:
            conversation = self.conversations[n] = Conversation(self.total)
        return conversation

    def asked(self, n: int, at: float) -> None:
        self._get(n).asked = at

    def written(self, n: int, index: int, at: float) -> None:
        self._get(n).written[index] = at

    def observe(self, n: int, method: str, args: dict[str, Any], at: float, ok: bool) -> None:
        self.calls += 1
        self.by_method[method] = self.by_method.get(method, 0) + 1
        conversation = self._get(n)
        if not ok:
            self.refused += 1
            return
        if method in SIGNS and conversation.sign is None:
            conversation.sign = at
        if method not in VISIBLE or conversation.final is not None:
            return
        conversation.visible.append(at)
        newest = _newest_marker(args)
        final = _is_final(method, args) and max(newest + 1, conversation.shown) == self.total
        if newest >= conversation.shown:
            self._shown(conversation, newest, at, final=final)
        if final:
            conversation.final = at
            self.finals += 1
            self.last_final = at
            if self.on_final is not None:
                self.on_final(n)

    def _shown(self, c: Conversation, newest: int, at: float, *, final: bool) -> None:
        self.lag += [at - c.written[i] for i in range(c.shown, newest + 1)]
        written = c.written[newest]
        resumed = newest == c.shown and written - c.last_text >= self.interval + MARGIN
        if c.shown == 0 or final or resumed:
            self.overhead.append(at - written)
            kind = "first" if c.shown == 0 else "final" if final else "resumed"
            self.overhead_by_kind.setdefault(kind, []).append(at - written)
        c.shown, c.last_text = newest + 1, at

    def result(self, *, elapsed: float, limited: list[str]) -> dict[str, Any]:
        ended = [c for c in self.conversations.values() if c.final is not None]
        gaps = [_longest_gap(c) for c in ended]
        late = sorted(c.final - c.written[-1] for c in ended if c.final is not None)
        firsts = [c.visible[0] - c.asked for c in self.conversations.values() if c.visible]
        limited_by_method: dict[str, int] = {}
        for method in limited:
            limited_by_method[method] = limited_by_method.get(method, 0) + 1
        return {
            "asked": len(self.conversations),
            "completed": self.finals,
            "elapsed": elapsed,
            "overhead": self.overhead,
            "overhead_by_kind": self.overhead_by_kind,
            "lag": self.lag,
            "calls": self.calls,
            "refused": self.refused,
            "limited": limited_by_method,
            "longest_gap": max(gaps, default=math.nan),
            "gap_p50": sorted(gaps)[len(gaps) // 2] if gaps else math.nan,
            "final_late_p50": late[len(late) // 2] if late else math.nan,
            "final_late_max": late[-1] if late else math.nan,
            "first_visible_max": max(firsts, default=math.nan),
            "final_late": late,
            "signs": sorted(
                c.sign - c.asked for c in self.conversations.values() if c.sign is not None
            ),
            "calls_by_method": dict(sorted(self.by_method.items())),
            "sign_by_conversation": {
                n: c.sign - c.asked for n, c in self.conversations.items() if c.sign is not None
            },
        }


def _newest_marker(args: dict[str, Any]) -> int:
    """The highest chunk index a call carries (-1 if none)."""
    texts = [str(args.get("text") or ""), str(args.get("markdown_text") or "")]
    for item in [*(args.get("blocks") or []), *(args.get("chunks") or [])]:
        text = item.get("text") if isinstance(item, dict) else None
        texts.append(str(text.get("text") if isinstance(text, dict) else text or ""))
    found = [int(m) for text in texts for m in MARKER.findall(text)]
    return max(found, default=-1)


def _is_final(method: str, args: dict[str, Any]) -> bool:
    if method == "chat.stopStream":
        return True
    if method not in ("chat.update", "chat.postMessage"):
        return False
    actions = [
        element.get("action_id")
        for block in args.get("blocks") or []
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    ]
    return STOP_ACTION not in actions


def _longest_gap(c: Conversation) -> float:
    times = sorted(c.visible)
    return max((b - a for a, b in itertools.pairwise(times)), default=0.0)
