"""Attachments in: each file checked against the app, streamed from its platform into Dify.

The ``Prepare`` step for messages with files. Every file is judged before any byte moves (the
app's ``/parameters`` file_upload: types, extensions, counts, sizes), so a file the app would
silently drop is refused with one localized sentence instead. Accepted files stream from the
platform into ``/files/upload`` under the chat call's ``user`` and are referenced as
``{type, transfer_method: "local_file", upload_file_id}``. Voice notes (and audio clips the app
cannot take as files) go through ``/audio-to-text`` and become the question.

A file whose URL leads off the platform's own file hosts (``FileRefused``: never fetched) is left
out, the answer says so in one line, and the rest of the message is answered; any other failure
refuses the message with one sentence, as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from bot.dify.client import DifyClient
from bot.dify.multipart import FilePart
from bot.errors import DifyError, DifyHTTPError, FileError, FileRefused, FileTooLarge
from bot.files.downloads import FileSource, capped, check_size, read_all
from bot.files.types import AUDIO_TO_TEXT_LIMIT, MB, FileRules, file_type, speech_mime_type
from bot.models import Attachment, IncomingMessage
from bot.preparing import Prepared, Unanswerable
from bot.texts import Texts

log = logging.getLogger(__name__)

_TOO_LARGE_CODES = frozenset({"file_too_large", "audio_too_large"})


@dataclass(frozen=True, slots=True)
class _Item:
    attachment: Attachment
    kind: str  # Dify type to send as; "voice" = transcribe
    limit: int


class Intake:
    """Implements ``bot.preparing.Prepare``; ``sources`` maps a platform to its
    ``FileSource`` (adapters register theirs when they are built)."""

    def __init__(
        self,
        texts: Texts,
        *,
        default_query: str = "",
        max_bytes: int = 100 * MB,
        rules_ttl: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sources: dict[str, FileSource] = {}
        self._texts = texts
        self._default_query = default_query
        self._max_bytes = max_bytes
        self._ttl = rules_ttl
        self._clock = clock
        self._rules: dict[int, tuple[float, FileRules]] = {}

    async def prepare(self, message: IncomingMessage, dify: DifyClient) -> Prepared:
        if not message.attachments:
            return Prepared(query=message.text)
        source = self.sources.get(message.platform)
        if source is None:
            raise self._refusal("file_failed", message, name=message.attachments[0].name)
        left_out: list[str] = []
        try:
            described = await asyncio.gather(
                *(self._describe(source, a, left_out) for a in message.attachments)
            )
        except FileError as exc:
            raise self._explain(exc, message) from None
        message = replace(message, attachments=tuple(a for a in described if a is not None))
        items = self._plan(message, await self.rules(dify)) if message.attachments else []
        try:  # concurrently: the answer waits for the slowest file, not for their sum
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._take(item, source, message, dify, left_out))
                    for item in items
                ]
        except BaseExceptionGroup as failed:
            first = failed.exceptions[0]
            raise (
                self._explain(first, message) if isinstance(first, FileError) else first
            ) from None
        results = [task.result() for task in tasks]
        return self._prepared(message, results, left_out)

    def _prepared(
        self,
        message: IncomingMessage,
        results: list[dict[str, Any] | str | None],
        left_out: list[str],
    ) -> Prepared:
        words = [message.text, *(r for r in results if isinstance(r, str))]
        files = tuple(r for r in results if isinstance(r, dict))
        notes = (self._left_out(message, left_out),) if left_out else ()
        query = "\n".join(w for w in words if w.strip())
        if not query and not files:  # nothing left to ask about
            raise Unanswerable(notes[0] if notes else self._texts.get("empty", message.locale))
        if not query:
            query = self._default_query or self._texts.get("file_only_query", message.locale)
        log.info("attachments platform=%s uploaded=%d transcribed=%d left_out=%d",
                 message.platform, len(files), len(words) - 1, len(left_out))  # fmt: skip
        return Prepared(query=query, files=files, notes=notes)

    async def _describe(
        self, source: FileSource, attachment: Attachment, left_out: list[str]
    ) -> Attachment | None:
        try:
            return await source.describe(attachment)
        except FileRefused as exc:
            log.info("attachment left out: %s", exc)
            left_out.append(attachment.name)
            return None

    async def rules(self, dify: DifyClient) -> FileRules:
        """The app's file rules, read at most every ``rules_ttl`` seconds per app."""
        cached = self._rules.get(id(dify))
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        rules = FileRules.from_parameters(await dify.parameters())
        self._rules[id(dify)] = (self._clock() + self._ttl, rules)
        return rules

    # ---- judging, before any byte moves ------------------------------------------------------

    def _plan(self, message: IncomingMessage, rules: FileRules) -> list[_Item]:
        items: list[_Item] = []
        for attachment in message.attachments:
            # A voice note is audio whatever its platform calls the format (WeChat: "speex").
            kind = "audio" if attachment.voice else file_type(attachment.mime_type, attachment.name)
            if kind == "audio" and attachment.voice and not rules.accepts("audio"):
                items.append(_Item(attachment, "voice", min(AUDIO_TO_TEXT_LIMIT, self._max_bytes)))
                continue
            as_type = rules.type_for(kind, attachment.name)
            if as_type is None:
                key = "file_not_allowed" if rules.enabled else "files_disabled"
                raise self._refusal(
                    key, message, name=attachment.name, allowed=rules.allowed_label()
                )
            limit = min(rules.limit_bytes(kind), self._max_bytes)
            if attachment.size is not None and attachment.size > limit:
                raise self._refusal("file_too_large", message, name=attachment.name, mb=limit // MB)
            items.append(_Item(attachment, as_type, limit))
        self._check_counts(message, rules, items)
        return items

    def _check_counts(self, message: IncomingMessage, rules: FileRules, items: list[_Item]) -> None:
        files = [item for item in items if item.kind != "voice"]
        images = [item for item in files if item.kind == "image"]
        for count, limit in (
            (len(files), rules.number_limit),
            (len(images), rules.image_number_limit),
        ):
            if limit and count > limit:
                raise self._refusal("too_many_files", message, limit=limit)

    # ---- moving bytes ------------------------------------------------------------------------

    async def _take(
        self,
        item: _Item,
        source: FileSource,
        message: IncomingMessage,
        dify: DifyClient,
        left_out: list[str],
    ) -> dict[str, Any] | str | None:
        try:
            if item.kind == "voice":
                return await self._transcribe(item, source, message, dify)
            return await self._upload(item, source, message, dify)
        except FileRefused as exc:  # never fetched: the rest of the message goes on
            log.info("attachment left out: %s", exc)
            left_out.append(item.attachment.name)
            return None

    async def _upload(
        self, item: _Item, source: FileSource, message: IncomingMessage, dify: DifyClient
    ) -> dict[str, Any]:
        attachment = item.attachment
        async with source.open(attachment, limit=item.limit) as download:
            check_size(download.size, item.limit, name=attachment.name)
            watch = _Watched(capped(download.chunks, item.limit, name=attachment.name))
            part = FilePart(
                "file",
                safe_filename(download.filename or attachment.name),
                _mime(download.mime_type, attachment.mime_type),
                watch.chunks(),
                download.size,
            )
            try:
                body = await dify.upload_stream(part, user=message.dify_user)
            except DifyError as exc:
                if watch.error is not None:  # the stream failed, not Dify: say why
                    raise watch.error from exc
                raise self._upload_refused(exc, attachment, message) from exc
        return {"type": item.kind, "transfer_method": "local_file", "upload_file_id": body["id"]}

    async def _transcribe(
        self, item: _Item, source: FileSource, message: IncomingMessage, dify: DifyClient
    ) -> str:
        attachment = item.attachment
        try:
            async with source.open(attachment, limit=item.limit) as download:
                data = await read_all(download, item.limit)
                name = download.filename or attachment.name
                mime = speech_mime_type(_mime(download.mime_type, attachment.mime_type), name)
        except FileRefused:
            raise
        except FileError as exc:  # a voice note that cannot be had: say so, as for any failure
            log.warning("voice not fetched: %s", exc)
            raise self._refusal("voice_failed", message) from None
        try:
            text = await dify.audio_to_text(
                data,
                filename=safe_filename(name),
                mime_type=mime,
                user=message.dify_user,
            )
        except DifyError as exc:
            log.warning("voice not transcribed: %s", exc)
            text = ""
        if not text.strip():
            raise self._refusal("voice_failed", message)
        return text

    # ---- telling the user ----------------------------------------------------------------

    def _upload_refused(
        self, exc: DifyError, attachment: Attachment, message: IncomingMessage
    ) -> Exception:
        if not isinstance(exc, DifyHTTPError) or exc.status not in (400, 413, 415):
            return exc  # Dify trouble, not the file's: the dispatcher says "error"
        log.info("Dify refused an upload: %s %s", exc.status, exc.code)
        if exc.code in _TOO_LARGE_CODES or exc.status == 413:
            return self._refusal("file_too_large_dify", message, name=attachment.name)
        return self._refusal("file_not_allowed_here", message, name=attachment.name)

    def _explain(self, exc: BaseException, message: IncomingMessage) -> Unanswerable:
        name = exc.name if isinstance(exc, FileError) else ""
        log.info("attachment not taken: %s", exc)
        if isinstance(exc, FileTooLarge):
            return self._refusal("file_too_large", message, name=name, mb=max(exc.limit // MB, 1))
        return self._refusal("file_failed", message, name=name)

    def _left_out(self, message: IncomingMessage, names: list[str]) -> str:
        text = self._texts.get("file_refused", message.locale)
        return text.format_map(_Blank(names=", ".join(names)))

    def _refusal(self, key: str, message: IncomingMessage, **values: object) -> Unanswerable:
        return Unanswerable(self._texts.get(key, message.locale).format_map(_Blank(values)))


class _Watched:
    """Remembers why a stream failed: the HTTP client may only report a broken request body."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.error: FileError | None = None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except FileError as exc:
            self.error = exc
            raise


class _Blank(dict[str, object]):
    """``format_map`` values; a placeholder an override text invents stays as written."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def safe_filename(name: str) -> str:
    """Dify refuses a filename with ``/`` or ``\\`` in it (and an empty one)."""
    cleaned = name.replace("/", "_").replace("\\", "_").strip()
    return cleaned or "file"


def _mime(downloaded: str, announced: str) -> str:
    """The more specific of the two (Dify refuses a part without a MIME type)."""
    for mime in (downloaded, announced):
        if mime and mime != "application/octet-stream" and "/" in mime:
            return mime
    return "application/octet-stream"
