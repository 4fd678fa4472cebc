"""Splitting long answers into platform-sized messages at paragraph and sentence boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable

Measure = Callable[[str], int]

# Where a cut reads naturally, best first. Sentence ends cover Latin and CJK punctuation.
_BOUNDARIES = (
    re.compile(r"\n\s*\n"),
    re.compile(r"\n"),
    re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])"),
    re.compile(r"\s+"),
)
_FENCE = "```"
_OPENING_FENCE = re.compile(r"^```(\S*)", re.MULTILINE)
_FENCE_ROOM = 8  # "\n```" to close a block we cut through, plus slack


def utf8_length(text: str) -> int:
    return len(text.encode("utf-8"))


def split_text(text: str, limit: int, *, measure: Measure = len) -> list[str]:
    """Parts of ``text`` each within ``limit``; code fences cut in two are closed and reopened."""
    if limit < 16:
        raise ValueError("limit too small to split sensibly")
    parts: list[str] = []
    rest = text
    while measure(rest) > limit:
        cut = _cut_point(rest, limit, measure)
        if rest[:cut].count(_FENCE) % 2:  # inside a code block: leave room to close it
            cut = _cut_point(rest, limit - _FENCE_ROOM, measure)
        head, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n")
        if head.count(_FENCE) % 2:
            openings = _OPENING_FENCE.findall(head)
            language = openings[-1] if openings else ""
            head += "\n" + _FENCE
            rest = f"{_FENCE}{language}\n{rest}"
        if head:
            parts.append(head)
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


def _fit(text: str, limit: int, measure: Measure) -> int:
    """The largest prefix length (in characters) whose measure is within ``limit``."""
    if measure is len:
        return min(len(text), limit)
    low, high = 0, min(len(text), limit)
    while low < high:
        mid = (low + high + 1) // 2
        if measure(text[:mid]) <= limit:
            low = mid
        else:
            high = mid - 1
    return low


def _cut_point(text: str, limit: int, measure: Measure) -> int:
    """The best boundary in the second half of what fits; a hard cut when there is none.

    The window reaches two characters past the fit so that a paragraph break right after text
    that exactly fits is still found (trailing whitespace is dropped from the part).
    """
    fit = _fit(text, limit, measure)
    window = text[: fit + 2]
    floor = fit // 2
    for pattern in _BOUNDARIES:
        ends = [m.end() for m in pattern.finditer(window) if m.end() > floor]
        for end in reversed(ends):
            if measure(window[:end].rstrip()) <= limit:
                return end
    return max(fit, 1)
