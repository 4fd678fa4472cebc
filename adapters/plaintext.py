"""Dify's Markdown rendered as readable plain text (WeChat, WeCom text, LINE), and the renderer
behind it that other surfaces give their own ``Style`` (WeCom's Markdown subset).

Rendered from markdown-it-py's syntax tree, never with regex chains: emphasis markers go, list
markers become bullets or numbers, links keep their address readable, code keeps its lines,
tables become one ``a | b`` line per row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_BLANK_RUNS = re.compile(r"\n{3,}")
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Style:
    """How one surface shows the inline and block marks it has."""

    strong: str
    heading: Callable[[int, str], str]
    link: Callable[[str, str], str]
    image: Callable[[str, str], str]
    code: Callable[[str], str]
    quote: str
    bullet: str
    literal: Callable[[str], str] = lambda text: text


def _plain_link(text: str, href: str) -> str:
    return href if not text or text == href else f"{text} ({href})"


def _plain_image(alt: str, src: str) -> str:
    return f"[{alt}] {src}" if alt else src


PLAIN = Style(
    strong="",
    heading=lambda level, text: f"【{text}】" if level <= 2 else text,
    link=_plain_link,
    image=_plain_image,
    code=lambda text: text,
    quote="> ",
    bullet="• ",
    # CommonMark leaves ``**`` literal when a CJK quote or bracket sits inside it
    # (``**“引用”**文字``: not right-flanking); models write that all the time, and chat users
    # must never see raw ``**``. Text nodes only: inline code keeps its ``2**3``.
    literal=lambda text: text.replace("**", ""),
)


def to_plain_text(markdown: str) -> str:
    """Markdown as a plain-text chat shows it: no raw ``**``, lists and links readable."""
    return render(markdown, PLAIN)


def render(markdown: str, style: Style) -> str:
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    text = "\n\n".join(b for b in (_block(n, style) for n in root.children) if b)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _block(node: SyntaxTreeNode, style: Style) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node, style)
    if kind == "heading":
        return style.heading(int(node.tag[1:]), _inline(node, style))
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, style)
    if kind == "blockquote":
        inner = "\n\n".join(_block(child, style) for child in node.children)
        return "\n".join(
            style.quote + line if line else style.quote.rstrip() for line in inner.split("\n")
        )
    if kind in ("fence", "code_block"):
        return node.content.rstrip("\n")
    if kind == "hr":
        return "────────"
    if kind == "table":
        return _table(node, style)
    if kind == "html_block":
        return _BR.sub("\n", node.content).strip()
    return "\n\n".join(_block(child, style) for child in node.children)


def _list(node: SyntaxTreeNode, style: Style) -> str:
    ordered = node.type == "ordered_list"
    number = int(str(node.attrs.get("start", 1))) if ordered else 0
    items = []
    for item in node.children:
        marker = f"{number}. " if ordered else style.bullet
        number += 1
        tight = all(child.hidden for child in item.children if child.type == "paragraph")
        body = ("\n" if tight else "\n\n").join(_block(child, style) for child in item.children)
        lines = body.split("\n") or [""]
        indent = " " * len(marker)
        items.append(
            "\n".join([marker + lines[0]] + [indent + ln if ln else ln for ln in lines[1:]])
        )
    return "\n".join(items)


def _table(node: SyntaxTreeNode, style: Style) -> str:
    rows = []
    for section in node.children:
        for row in section.children:
            rows.append(" | ".join(_inline(cell, style) for cell in row.children))
    return "\n".join(rows)


def _inline(node: SyntaxTreeNode, style: Style) -> str:
    """The text of a block's inline content (``node`` holds one ``inline`` child)."""
    return (
        "".join(_span(child, style) for child in node.children[0].children) if node.children else ""
    )


def _html_inline(tag: str) -> str:
    return "\n" if _BR.fullmatch(tag) else ""


def _span(node: SyntaxTreeNode, style: Style) -> str:
    kind = node.type
    if kind in ("text", "html_inline"):
        return style.literal(node.content) if kind == "text" else _html_inline(node.content)
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return style.code(node.content)
    inner = "".join(_span(child, style) for child in node.children)
    if kind == "strong":
        return f"{style.strong}{inner}{style.strong}" if inner else ""
    if kind == "link":
        return style.link(inner, str(node.attrs.get("href", "")))
    if kind == "image":
        return style.image(inner, str(node.attrs.get("src", "")))
    return inner  # em, s: the words without the marks
