"""A ``multipart/form-data`` body streamed from an async byte source (one file part + fields).

httpx builds multipart bodies only from in-memory or synchronous file objects; uploads to Dify
stream straight from the platform download instead, so a file is never held whole in memory.
With a known size the body gets an exact Content-Length (no chunked request: not every proxy in
front of Dify accepts one); a source that then sends more or fewer bytes fails the upload.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from bot.errors import FileUnavailable


@dataclass(frozen=True, slots=True)
class FilePart:
    field: str
    filename: str
    mime_type: str
    chunks: AsyncIterator[bytes]
    size: int | None = None


def to_multipart(
    part: FilePart, fields: dict[str, str]
) -> tuple[dict[str, str], AsyncIterator[bytes]]:
    """The request headers and the body stream for ``fields`` followed by ``part``."""
    boundary = secrets.token_hex(16)
    head = b"".join(
        _header(boundary, f'form-data; name="{_quote(name)}"') + value.encode() + b"\r\n"
        for name, value in fields.items()
    )
    disposition = f'form-data; name="{_quote(part.field)}"; filename="{_quote(part.filename)}"'
    head += _header(boundary, disposition, part.mime_type)
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if part.size is not None:
        headers["Content-Length"] = str(len(head) + part.size + len(tail))

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = 0
        async for chunk in part.chunks:
            sent += len(chunk)
            if part.size is not None and sent > part.size:
                raise FileUnavailable(f"{part.filename}: longer than announced", name=part.filename)
            yield chunk
        if part.size is not None and sent != part.size:
            raise FileUnavailable(f"{part.filename}: shorter than announced", name=part.filename)
        yield tail

    return headers, body()


def _header(boundary: str, disposition: str, mime_type: str = "") -> bytes:
    lines = [f"--{boundary}", f"Content-Disposition: {disposition}"]
    if mime_type:
        lines.append(f"Content-Type: {mime_type}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def _quote(value: str) -> str:
    """HTML5 form encoding of a parameter value, as browsers (and httpx) send it."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
