"""Dify's Markdown as Telegram HTML (``parse_mode=HTML``): markdown-it-py's syntax tree through a
small renderer, and answers split to Telegram's 4096 characters.

Telegram's HTML knows b, i, s, u, code, pre (``<pre><code class="language-x">``), a href and
blockquote, and nothing else: any other tag is "can't parse entities: Unsupported start tag".
So every text is escaped (``&``, ``<``, ``>``; ``"`` too inside href), raw HTML in the Markdown
is shown as text, headings become bold lines, lists get bullets, tables an aligned ``<pre>``,
images a link. The 4096-character limit counts the text after the tags are parsed: whole
top-level blocks are packed into each message, and only a block longer than a message is split
(at paragraphs, then lines: ``bot.text.split_text``, which closes and reopens a code fence).
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from bot.text import split_text

MESSAGE_LIMIT = 4096  # characters of a message after its HTML is parsed
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_TAGS = {"strong": "b", "em": "i", "s": "s"}
_BULLETS = ("•", "◦", "▪")
_INDENT = "  "
_LINK_SCHEMES = ("http://", "https://", "tg://")
_TAG = re.compile(r"<[^>]+>")


def to_html(markdown: str) -> str:
    """Render Markdown as the HTML Telegram's parser accepts."""
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    return _blocks(root.children, depth=0).strip("\n")


def to_parts(markdown: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The answer as HTML messages, each within ``limit`` characters once parsed. Whole blocks
    (paragraphs, lists, code blocks, tables) are packed into each message, so a code block is
    never cut unless it alone is longer than a message. Top-level blocks render independently
    (the renderer joins them with a blank line), so each is rendered once."""
    parts: list[str] = []
    current: list[str] = []
    length = 0
    for html in _pieces(markdown, limit):
        size = visible_length(html)
        if current and length + 2 + size > limit:
            parts.append("\n\n".join(current))
            current, length = [], 0
        length += size + (2 if current else 0)
        current.append(html)
    if current:
        parts.append("\n\n".join(current))
    return parts


def visible_length(html: str) -> int:
    """How long Telegram finds a message: its text once the tags are parsed."""
    return len(to_plain(html))


def to_plain(html: str) -> str:
    """The text of our HTML without its tags (what Telegram shows, and the plain fallback)."""
    text = _TAG.sub("", html)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&amp;", "&")):
        text = text.replace(entity, char)
    return text


def _pieces(markdown: str, limit: int) -> list[str]:
    """The top-level blocks of the Markdown as HTML, each within ``limit`` once parsed (a
    longer one split at paragraph and line boundaries by ``bot.text.split_text``)."""
    tokens = _PARSER.parse(markdown)
    lines = markdown.split("\n")
    pieces: list[str] = []
    for node in SyntaxTreeNode(tokens).children:
        html = _block(node, depth=0)
        if visible_length(html) <= limit or node.map is None:
            pieces.append(html)
            continue
        source = "\n".join(lines[node.map[0] : node.map[1]])
        size = limit
        while True:
            split = [to_html(piece) for piece in split_text(source, size)]
            if size < 512 or all(visible_length(piece) <= limit for piece in split):
                break
            size = size * 3 // 4
        pieces += split
    return [piece for piece in pieces if piece.strip()]


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attribute(text: str) -> str:
    return escape(text).replace('"', "&quot;")


def _blocks(nodes: list[SyntaxTreeNode], depth: int, *, tight: bool = False) -> str:
    rendered = [_block(node, depth) for node in nodes]
    return ("\n" if tight else "\n\n").join(part for part in rendered if part)


def _block(node: SyntaxTreeNode, depth: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]) if node.children else ""
    if kind == "heading":
        return f"<b>{_inline(node.children[0])}</b>" if node.children else ""
    if kind in ("fence", "code_block"):
        return _code(node.content, (node.info or "").split()[0] if node.info else "")
    if kind == "blockquote":
        return f"<blockquote>{_blocks(node.children, depth)}</blockquote>"
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, depth)
    if kind == "hr":
        return "———"
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children, depth)


def _code(content: str, language: str) -> str:
    body = escape(content.rstrip("\n"))
    if not body:
        return ""
    if language and all(c.isalnum() or c in "+-_#." for c in language):
        return f'<pre><code class="language-{_attribute(language)}">{body}</code></pre>'
    return f"<pre>{body}</pre>"


def _list(node: SyntaxTreeNode, depth: int) -> str:
    ordered = node.type == "ordered_list"
    start = int(node.attrs.get("start", 1) or 1) if ordered else 1
    tight = not any(
        child.type == "paragraph" and not child.hidden
        for item in node.children
        for child in item.children
    )
    lines = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}." if ordered else _BULLETS[depth % len(_BULLETS)]
        body = _blocks(item.children, depth + 1, tight=tight)
        indent = _INDENT * depth
        lines.append(f"{indent}{marker} {body.lstrip()}")
    return "\n".join(lines) if tight else "\n\n".join(lines)


def _table(node: SyntaxTreeNode) -> str:
    rows = [
        [_plain(cell) for cell in row.children]
        for section in node.children
        for row in section.children
    ]
    if not rows:
        return ""
    widths = [max(len(row[i]) if i < len(row) else 0 for row in rows) for i in range(len(rows[0]))]
    lines = [
        " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) for row in rows
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return f"<pre>{escape(chr(10).join(line.rstrip() for line in lines))}</pre>"


def _plain(node: SyntaxTreeNode) -> str:
    """A node's text without marks (table cells go inside <pre>, which holds no tags)."""
    if node.type in ("text", "code_inline"):
        return node.content
    if node.type in ("softbreak", "hardbreak"):
        return " "
    return "".join(_plain(child) for child in node.children)


def _inline(node: SyntaxTreeNode) -> str:
    return "".join(_span(child) for child in node.children)


def _span(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "text":
        return escape(node.content)
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind == "code_inline":
        return f"<code>{escape(node.content)}</code>" if node.content else ""
    if kind in _TAGS:
        inner = "".join(_span(child) for child in node.children)
        return f"<{_TAGS[kind]}>{inner}</{_TAGS[kind]}>" if inner else ""
    if kind == "link":
        return _link(str(node.attrs.get("href", "")), "".join(_span(c) for c in node.children))
    if kind == "image":
        label = escape(_plain(node)) or escape(str(node.attrs.get("src", "")))
        return _link(str(node.attrs.get("src", "")), label)
    if kind == "html_inline":
        return escape(node.content)
    return "".join(_span(child) for child in node.children)


def _link(href: str, label: str) -> str:
    if not href.lower().startswith(_LINK_SCHEMES) or any(c.isspace() for c in href):
        return (
            f"{label} ({escape(href)})"
            if href and label and href != label
            else label or escape(href)
        )
    return f'<a href="{_attribute(href)}">{label or escape(href)}</a>'
