"""Dify's Markdown as a Feishu card's ``markdown`` element: markdown-it-py's tree, re-rendered.

A card (JSON 2.0) renders CommonMark's bold, italics, strikethrough, links, inline code, fenced
code with a language, lists, quotes, headings and tables, and reads some HTML-like tags of its
own (``<at>``, ``<font>``, ``<text_tag>``…). So the renderer: escapes ``<``, ``>`` and ``&`` in
text (an answer must not mention everyone or restyle the card), keeps code as written, and turns
images into links (a card image needs an ``img_key`` uploaded first, and a URL there makes
Feishu refuse the whole card).
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_MARKS = {"strong": "**", "em": "*", "s": "~~"}


def to_card_markdown(markdown: str) -> str:
    """Render Markdown for a card's markdown element."""
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    return _blocks(root.children, indent="").strip("\n")


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _blocks(nodes: list[SyntaxTreeNode], *, indent: str, tight: bool = False) -> str:
    rendered = [_block(node, indent) for node in nodes]
    return ("\n" if tight else "\n\n").join(part for part in rendered if part)


def _block(node: SyntaxTreeNode, indent: str) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]) if node.children else ""
    if kind == "heading":
        level = min(int(node.tag[1:]), 4)  # h5/h6 show as plain text in a card
        return "#" * level + " " + (_inline(node.children[0]) if node.children else "")
    if kind in ("fence", "code_block"):
        body = node.content if node.content.endswith("\n") else node.content + "\n"
        return f"```{node.info.split(' ')[0] if kind == 'fence' else ''}\n{body}```"
    if kind == "blockquote":
        inner = _blocks(node.children, indent="")
        return "\n".join("> " + line if line else ">" for line in inner.split("\n"))
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, indent)
    if kind == "hr":
        return "---"
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return escape(node.content.rstrip("\n"))
    return _blocks(node.children, indent=indent)


def _list(node: SyntaxTreeNode, indent: str) -> str:
    start = int(node.attrs.get("start", 1) or 1)
    lines = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}. " if node.type == "ordered_list" else "- "
        inner = _blocks(item.children, indent=indent + "    ", tight=True)
        first, *rest = inner.split("\n") if inner else [""]
        lines.append(indent + marker + first)
        lines.extend(line if line.startswith(indent + "    ") else indent + "    " + line
                     for line in rest)  # fmt: skip
    return "\n".join(lines)


def _table(node: SyntaxTreeNode) -> str:
    rows = []
    for section in node.children:
        for row in section.children:
            cells = [_inline(c.children[0]) if c.children else "" for c in row.children]
            rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    if not rows:
        return ""
    width = rows[0].count(" | ") + 1
    return "\n".join([rows[0], "|" + " --- |" * width, *rows[1:]])


def _inline(node: SyntaxTreeNode) -> str:
    return "".join(_run(child) for child in node.children)


def _run(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "text":
        return escape(node.content)
    if kind == "code_inline":
        return f"`{node.content}`"
    if kind in ("softbreak", "hardbreak"):
        return "\n"
    if kind in _MARKS:
        return f"{_MARKS[kind]}{_inline(node)}{_MARKS[kind]}"
    if kind == "link":
        return f"[{_inline(node) or node.attrs.get('href', '')}]({node.attrs.get('href', '')})"
    if kind == "image":
        label = "".join(escape(c.content) for c in node.children) or "image"
        return f"[{label}]({node.attrs.get('src', '')})"
    if kind == "html_inline":
        return escape(node.content)
    return _inline(node) if node.children else escape(node.content)
