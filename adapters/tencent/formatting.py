"""Dify's Markdown rendered for WeChat: plain text (OA, WeCom text) or WeCom's Markdown subset
(the renderer is shared: ``adapters.plaintext``)."""

from __future__ import annotations

from adapters.plaintext import Style, render, to_plain_text

__all__ = ["WECOM", "to_plain_text", "to_wecom_markdown"]

# WeCom app markdown: headings, bold, links, quotes and inline code render; italics, images and
# fenced code do not (https://developer.work.weixin.qq.com/document/path/90236).
WECOM = Style(
    strong="**",
    heading=lambda level, text: f"{'#' * min(level, 6)} {text}",
    link=lambda text, href: f"[{text or href}]({href})",
    image=lambda alt, src: f"[{alt or src}]({src})",
    code=lambda text: f"`{text}`",
    quote="> ",
    bullet="- ",
)


def to_wecom_markdown(markdown: str) -> str:
    """Markdown reduced to what the WeCom client renders."""
    return render(markdown, WECOM)
