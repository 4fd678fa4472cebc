"""Files in answers, out: Dify file links found in the answer and fetched promptly, from Dify only.

Dify hands out files as signed URLs that expire within minutes (``FILES_ACCESS_TIMEOUT``, 300 s
by default): ``message_file`` events (Chatbot/Agent; the URL may be relative to the API host when
Dify's ``FILES_URL`` is unset), ``message_end.files`` / ``workflow_finished.data.files``, and
Markdown in the text itself (Chatflows: ``![name](url)``, ``[name](url)``). Adapters re-post the
bytes natively and drop the link from the text; a file that cannot be fetched keeps its link.
Only URLs on Dify's own origins, under ``/files/``, are ever fetched (and every redirect hop is
checked again), so an answer cannot make the bot download from anywhere else.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Iterable
from dataclasses import dataclass, field
from logging import ERROR

import httpx
from markdown_it import MarkdownIt
from markdown_it.token import Token

from bot.errors import FileError
from bot.files.downloads import GuardedFetch, Hop, body_of, content_type
from bot.files.intake import Intake
from bot.files.types import MB, file_type
from bot.models import Answer
from bot.ops.effort import best_effort

log = logging.getLogger(__name__)

_MARKDOWN = MarkdownIt("commonmark")


@dataclass(frozen=True, slots=True)
class Mention:
    """Where the answer text links a file: ``![label](href)`` or ``[label](href)``."""

    image: bool
    label: str
    href: str


@dataclass(slots=True)
class LinkedFile:
    """One Dify file of an answer: an absolute URL to fetch it, and its mentions in the text."""

    url: str
    filename: str
    mime_type: str = ""
    mentions: list[Mention] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return file_type(self.mime_type, self.filename)


@dataclass(frozen=True, slots=True)
class OutFile:
    """A fetched answer file, ready to upload to a platform."""

    filename: str
    mime_type: str
    data: bytes
    source: LinkedFile

    @property
    def kind(self) -> str:
        return file_type(self.mime_type, self.filename)


class AnswerFiles:
    """Finds and fetches answer files. ``base`` resolves relative URLs (the Dify API origin);
    ``origins`` are every ``scheme://host[:port]`` files may come from (API and ``FILES_URL``)."""

    def __init__(
        self,
        fetch: GuardedFetch,
        *,
        base: str,
        origins: Iterable[str] = (),
        max_bytes: int = 100 * MB,
    ) -> None:
        self._fetch = fetch
        self._base = httpx.URL(base)
        self._origins = {_origin(httpx.URL(o)) for o in (base, *origins) if o}
        self.max_bytes = max_bytes

    def find(self, text: str, answer: Answer) -> list[LinkedFile]:
        """Every Dify file of the answer, once each (signed URLs differ per mention: the path
        identifies the file)."""
        found: dict[str, LinkedFile] = {}
        for mention in mentions(text):
            url = self._resolve(mention.href)
            if url is not None:
                entry = found.setdefault(
                    _key(url), LinkedFile(str(url), _basename(url, mention.label))
                )
                entry.mentions.append(mention)
        for out in answer.files:
            url = self._resolve(out.url)
            if url is None:
                continue
            entry = found.setdefault(_key(url), LinkedFile(str(url), _basename(url, out.filename)))
            entry.filename = out.filename or entry.filename
            entry.mime_type = out.mime_type or entry.mime_type
        return list(found.values())

    async def fetch_all(
        self, files: list[LinkedFile], *, limit: int | None = None
    ) -> tuple[list[OutFile], list[LinkedFile]]:
        """``(fetched, failed)``, fetched concurrently (the URLs are about to expire)."""
        results = await asyncio.gather(
            *(self.fetch(f, limit=limit) for f in files), return_exceptions=True
        )
        fetched: list[OutFile] = []
        failed: list[LinkedFile] = []
        for linked, result in zip(files, results, strict=True):
            if isinstance(result, OutFile):
                fetched.append(result)
            elif isinstance(result, FileError):
                log.warning("answer file not fetched: %s", result)
                failed.append(linked)
            else:
                raise result
        return fetched, failed

    async def fetch(self, linked: LinkedFile, *, limit: int | None = None) -> OutFile:
        cap = min(limit or self.max_bytes, self.max_bytes)
        name = linked.filename
        async with self._fetch.open(
            linked.url, policy=self._only_dify, limit=cap, name=name
        ) as response:
            data = b"".join([chunk async for chunk in body_of(response, cap, name=name)])
            served = content_type(response)
        mime = linked.mime_type or (
            served if served not in ("", "application/octet-stream") else ""
        )
        mime = mime or mimetypes.guess_type(name)[0] or "application/octet-stream"
        return OutFile(name, mime, data, linked)

    def _only_dify(self, url: httpx.URL) -> Hop | None:
        """Only Dify's own origins (configured: at whatever address), with no headers at all
        (the URL is signed; the API key never goes with it)."""
        return Hop(configured=True) if _origin(url) in self._origins else None

    def _resolve(self, href: str) -> httpx.URL | None:
        try:
            url = self._base.join(href)
        except httpx.InvalidURL:
            return None
        if _origin(url) not in self._origins or "/files/" not in url.path:
            return None
        return url


@dataclass(frozen=True, slots=True)
class AnswerUploads:
    """One answer's Dify files, fetched for a platform to post natively (Dify's URLs expire in
    minutes: fetch first, then show the text); ``text`` no longer links the ones fetched, and
    ``links()`` are what to show for those that failed. A failure to fetch at all keeps every
    link in the text."""

    text: str
    fetched: list[OutFile]
    failed: list[LinkedFile]

    @classmethod
    async def fetch(
        cls, files: AnswerFiles, text: str, answer: Answer, *, limit: int | None = None
    ) -> AnswerUploads:
        linked = files.find(text, answer)
        if not linked:
            return cls(text, [], [])
        with best_effort("fetch the answer's files (their links stay)", log, level=ERROR) as got:
            fetched, failed = await files.fetch_all(linked, limit=limit)
        if got.failed:
            return cls(text, [], [])
        stripped = without(text, [f.source for f in fetched])
        return cls(stripped or ", ".join(f.filename for f in fetched), fetched, failed)

    def links(self) -> list[str]:
        """The failed files' links, for a message after the answer."""
        return fallback_links(self.text, self.failed)


def mentions(text: str) -> list[Mention]:
    """Images and links in the answer's Markdown, from the parser's token stream."""
    found: list[Mention] = []
    for token in _MARKDOWN.parse(text):
        children = token.children or []
        for index, child in enumerate(children):
            if child.type == "image":
                found.append(Mention(True, child.content, str(child.attrGet("src") or "")))
            elif child.type == "link_open":
                found.append(
                    Mention(False, _label(children[index + 1 :]), str(child.attrGet("href") or ""))
                )
    return found


def without(text: str, files: Iterable[LinkedFile]) -> str:
    """The text with these files' Markdown removed: an image goes, a link leaves its label."""
    for linked in files:
        for mention in linked.mentions:
            if mention.image:
                text = text.replace(f"![{mention.label}]({mention.href})", "")
            else:
                text = text.replace(f"[{mention.label}]({mention.href})", mention.label)
    return text.strip()


def fallback_links(text: str, files: Iterable[LinkedFile]) -> list[str]:
    """``name: url`` for files the text does not link already (so none is ever lost)."""
    return [f"{f.filename}: {f.url}" for f in files if not f.mentions and f.url not in text]


def _label(tokens: list[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if token.type == "link_close":
            break
        parts.append(token.content)
    return "".join(parts)


def _origin(url: httpx.URL) -> str:
    port = url.port or {"http": 80, "https": 443}.get(url.scheme, 0)
    return f"{url.scheme}://{url.host}:{port}"


def _key(url: httpx.URL) -> str:
    return f"{_origin(url)}{url.path}"


def _basename(url: httpx.URL, label: str) -> str:
    tail = url.path.rstrip("/").rsplit("/", 1)[-1]
    if tail in ("file-preview", "image-preview"):  # /files/<id>/file-preview: the id says nothing
        tail = ""
    return label.strip() or tail or "file"


@dataclass(frozen=True, slots=True)
class FileServices:
    """The file plumbing the adapters share, built once in ``difybot.wiring``."""

    fetch: GuardedFetch
    intake: Intake
    answers: AnswerFiles
