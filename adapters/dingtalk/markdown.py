"""Dify's Markdown as DingTalk robot Markdown: markdown-it-py's syntax tree through a renderer.

DingTalk's robot Markdown (docs "自定义机器人发送消息的消息类型") shows headings, bold, italics,
links, images, ordered and bullet lists and quotes; it has no tables and no strikethrough, and a
single newline inside a paragraph is not a line break (a line ends with two spaces, or blocks
stand apart by a blank line). Tables become one bullet per row ("header: value" pairs), struck
text stays plain, code keeps its fences (newer clients show them; older ones show the text).
"""

from __future__ import annotations

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
_MARKS = {"strong": "**", "em": "*"}
_INDENT = "  "


def to_dingtalk_markdown(markdown: str) -> str:
    root = SyntaxTreeNode(_PARSER.parse(markdown))
    return _blocks(root.children, depth=0).strip("\n")


def _blocks(nodes: list[SyntaxTreeNode], depth: int, *, tight: bool = False) -> str:
    rendered = [_block(node, depth) for node in nodes]
    return ("\n" if tight else "\n\n").join(part for part in rendered if part)


def _block(node: SyntaxTreeNode, depth: int) -> str:
    kind = node.type
    if kind == "paragraph":
        return _inline(node.children[0]) if node.children else ""
    if kind == "heading":
        level = min(int(node.tag[1:]), 6)
        return f"{'#' * level} {_inline(node.children[0])}" if node.children else ""
    if kind in ("fence", "code_block"):
        language = node.info.split()[0] if node.info else ""
        return f"```{language}\n{node.content.rstrip(chr(10))}\n```"
    if kind == "blockquote":
        inner = _blocks(node.children, depth)
        return "\n".join(f"> {line}" if line else ">" for line in inner.split("\n"))
    if kind in ("bullet_list", "ordered_list"):
        return _list(node, depth)
    if kind == "hr":
        return "---"
    if kind == "table":
        return _table(node)
    if kind == "html_block":
        return node.content.rstrip("\n")
    return _blocks(node.children, depth)


def _list(node: SyntaxTreeNode, depth: int) -> str:
    ordered = node.type == "ordered_list"
    start = int(str(node.attrs.get("start", 1))) if ordered else 1
    lines = []
    for number, item in enumerate(node.children, start=start):
        marker = f"{number}." if ordered else "-"
        body = _blocks(item.children, depth + 1, tight=True)
        first, *rest = body.split("\n") if body else [""]
        lines.append(f"{_INDENT * depth}{marker} {first}")
        lines.extend(rest)
    return "\n".join(lines)


def _table(node: SyntaxTreeNode) -> str:
    rows = [row for part in node.children for row in part.children]
    if not rows:
        return ""
    header = [_inline(cell.children[0]) if cell.children else "" for cell in rows[0].children]
    lines = []
    for row in rows[1:]:
        cells = [_inline(cell.children[0]) if cell.children else "" for cell in row.children]
        named = zip(header, cells, strict=False)
        pairs = [f"{name}: {value}" if name else value for name, value in named]
        lines.append("- " + "; ".join(pairs))
    return "\n".join(lines) if lines else "- " + " | ".join(header)


def _inline(node: SyntaxTreeNode) -> str:
    return "".join(_span(child) for child in node.children)


def _span(node: SyntaxTreeNode) -> str:
    kind = node.type
    if kind == "text":
        return node.content
    if kind == "code_inline":
        return f"`{node.content}`"
    if kind == "softbreak":
        return "  \n"  # DingTalk joins lines unless the first ends with two spaces
    if kind == "hardbreak":
        return "  \n"
    if kind in _MARKS:
        return f"{_MARKS[kind]}{_inline(node)}{_MARKS[kind]}"
    if kind == "s":
        return _inline(node)
    if kind == "link":
        return f"[{_inline(node)}]({node.attrs.get('href', '')})"
    if kind == "image":
        return f"![{_inline(node)}]({node.attrs.get('src', '')})"
    if kind == "html_inline":
        return node.content
    return _inline(node) if node.children else node.content
