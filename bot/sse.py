"""Server-sent events from a byte stream: bounded line splitting, then httpx-sse's field decoder."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from httpx_sse import ServerSentEvent
from httpx_sse._decoders import SSEDecoder

from bot.errors import DifyProtocolError

# httpx-sse's own line decoder buffers a line without limit; a server (or a proxy error page sent
# as one "line") could make us hold megabytes. We split bytes ourselves, refuse lines over the
# bound, and keep httpx-sse's SSEDecoder for the field rules (event/data/id/retry, comments).
DEFAULT_MAX_LINE = 4 * 1024 * 1024


async def iter_lines(chunks: AsyncIterable[bytes], *, max_line: int) -> AsyncIterator[str]:
    """Yield text lines (without terminator) from raw chunks; ``\\n`` and ``\\r\\n`` end a line."""
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            yield _decode(buffer[start:end])
            start = end + 1
        if start:
            del buffer[:start]
        if len(buffer) > max_line:
            raise DifyProtocolError(f"stream line exceeds {max_line} bytes")
    if buffer:
        yield _decode(buffer)


def _decode(line: bytearray) -> str:
    if line.endswith(b"\r"):
        line = line[:-1]
    return line.decode("utf-8", errors="replace")


async def iter_events(
    chunks: AsyncIterable[bytes], *, max_line: int = DEFAULT_MAX_LINE
) -> AsyncIterator[ServerSentEvent]:
    """Yield complete SSE events; a final event without its blank line is still delivered."""
    decoder = SSEDecoder()
    async for line in iter_lines(chunks, max_line=max_line):
        event = decoder.decode(line)
        if event is not None:
            yield event
    last = decoder.decode("")
    if last is not None:
        yield last
