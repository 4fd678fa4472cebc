"""Dify's Markdown as Slack ``mrkdwn``: markdown-it-py's syntax tree through a small renderer.

mrkdwn has bold ``*x*``, italics ``_x_``, strike ``~x~``, code, fences, quotes and ``<url|label>``
links, but no headings, tables or images: headings become bold lines, tables an aligned code
block (or one record per row when too wide), images links. Only ``&``, ``<`` and ``>`` are
escaped (Slack's "Formatting message text"). Slack ignores a marker glued to a word character
(``見て**注意**ください`` stays literal), so a space is put between them.
"""

from __future__ import annotations

import unicodedata

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_MARKS = {"strong": "*", "em": "_", "s": "~"}
_BULLETS = ("•", "◦", "▪")
_INDENT = "    "
_TABLE_MAX_WIDTH = 60


def to_mrkdwn(markdown: str) -> str:
    """Render Markdown as Slack mrkdwn."""
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    return _blocks(root.children, depth=0).strip("\n")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _blocks(nodes: list[SyntaxTreeNode], depth: int, *, tight: bool = False) -> str:
    rendered = [_block(node, depth) for node in nodes]
    return ("\n" if tight else "\n\n").join(part for part in rendered if part)


def _block(node: SyntaxTreeNode, depth: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]) if node.children else ""
    if kind == "heading":
        return f"*{_inline(node.children[0], bold=True)}*" if node.children else ""
    if kind in ("fence", "code_block"):
        body = node.content if node.content.endswith("\n") else node.content + "\n"
        return f"```\n{escape(body)}```"
    if kind == "blockquote":
        inner = _blocks(node.children, depth)
        return "\n".join("> " + line if line else ">" for line in inner.split("\n"))
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, depth)
    if kind == "hr":
        return "───────"
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children, depth)


def _list(node: SyntaxTreeNode, depth: int) -> str:
    start = int(str(node.attrs.get("start", 1))) if node.type == "ordered_list" else 1
    lines = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}." if node.type == "ordered_list" else _BULLETS[depth % len(_BULLETS)]
        body = _blocks(item.children, depth + 1, tight=True)
        first, *rest = body.split("\n") if body else [""]
        lines.append(f"{_INDENT * depth}{marker} {first}")
        lines.extend(line if line.startswith(_INDENT) else _INDENT * depth + "  " + line
                     for line in rest)  # fmt: skip
    return "\n".join(lines)


def _inline(node: SyntaxTreeNode, *, bold: bool = False, plain: bool = False) -> str:
    out = ""
    after_mark = False
    for child in node.children:
        text, marked = _span(child, bold=bold, plain=plain)
        if not text:
            continue
        if out and ((marked and out[-1].isalnum()) or (after_mark and text[0].isalnum())):
            out += " "
        out += text
        after_mark = marked
    return out


def _span(node: SyntaxTreeNode, *, bold: bool, plain: bool) -> tuple[str, bool]:
    kind = node.type
    if kind == "text":
        return escape(node.content), False
    if kind in ("softbreak", "hardbreak"):
        return ("  " if plain else "\n"), False
    if kind == "code_inline":
        return (escape(node.content) if plain else f"`{escape(node.content)}`"), not plain
    if kind in ("html_inline", "html_block"):
        return escape(node.content), False
    inner = _inline(node, bold=bold or kind == "strong", plain=plain)
    if kind in _MARKS:
        if plain or (kind == "strong" and bold) or not inner.strip():
            return inner, False
        return _MARKS[kind] + inner + _MARKS[kind], True
    if kind in ("link", "image"):
        return _link(node, inner, plain=plain), False
    return inner, False


def _link(node: SyntaxTreeNode, label: str, *, plain: bool) -> str:
    href = str(node.attrs.get("href") or node.attrs.get("src") or "")
    if node.type == "image":
        label = escape(str(node.attrs.get("alt") or "")) or label or "image"
    if ":" not in href or href.startswith("javascript:"):
        return label or escape(href)  # relative or unsafe: keep the words only
    if plain:
        return label or escape(href)
    label = label.replace("|", "¦")
    if not label or label == escape(href):
        return f"<{escape(href)}>"
    return f"<{escape(href)}|{label}>"


def _table(node: SyntaxTreeNode) -> str:
    rows = [[_cell(cell) for cell in tr.children] for part in node.children for tr in part.children]
    if not rows:
        return ""
    columns = max(len(row) for row in rows)
    rows = [row + [""] * (columns - len(row)) for row in rows]
    widths = [max(_width(row[i]) for row in rows) for i in range(columns)]
    if sum(widths) + 3 * (columns - 1) > _TABLE_MAX_WIDTH:
        return _records(rows)
    lines = [
        " | ".join(_pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "```\n" + "\n".join(lines) + "\n```"


def _cell(cell: SyntaxTreeNode) -> str:
    return _inline(cell.children[0], plain=True).strip() if cell.children else ""


def _records(rows: list[list[str]]) -> str:
    """A table too wide for a code block: one bullet per row, ``header: value`` pairs."""
    header, *body = rows
    lines = []
    for row in body:
        pairs = [f"{name}: {value}" for name, value in zip(header, row, strict=True) if value]
        lines.append("• " + " · ".join(pairs))
    return "\n".join(lines)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))
