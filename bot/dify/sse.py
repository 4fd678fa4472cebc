"""Server-sent events from a byte stream: a bounded frame splitter with a fast path for Dify.

Dify writes every event as one frame of one line, ``data: {json}`` or ``event: ping``, each
followed by a blank line. Splitting raw bytes on blank lines and slicing off ``data: `` is most of
the client's work per token, so that path is kept short, and frames are handed on in batches (one
async hop per network read, not per token): benchmarks/dify_client_throughput.py measured the
per-line httpx-sse decoding at more than all the rest of the client. Any other frame shape
(several lines, comments, ``id:``/``retry:``) goes through httpx-sse's SSEDecoder, which follows
the WHATWG field rules.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable

from httpx_sse._decoders import SSEDecoder

from bot.errors import DifyProtocolError

DEFAULT_MAX_FRAME = 4 * 1024 * 1024
Frame = tuple[str, bytes]  # (event name, data)
PING: Frame = ("ping", b"")


async def iter_frames(
    chunks: AsyncIterable[bytes], *, max_frame: int = DEFAULT_MAX_FRAME
) -> AsyncGenerator[list[Frame], None]:
    """Yield the complete frames of each read as a list of ``(event, data)``.

    ``event`` is ``message`` unless the frame names one. A frame larger than ``max_frame`` bytes
    raises DifyProtocolError instead of growing without bound (a proxy's error page or a broken
    server must not eat memory). A last frame lacking its blank line is delivered at the end.
    """
    buffer = b""
    async for chunk in chunks:
        buffer = buffer + chunk if buffer else chunk
        if b"\r" in buffer:  # CRLF line ends (rare: not Dify's own)
            buffer = buffer.replace(b"\r\n", b"\n")
            if buffer.endswith(b"\r"):
                continue  # its \n may come with the next chunk
        if b"\n\n" in buffer:
            *frames, buffer = buffer.split(b"\n\n")
            yield [
                ("message", frame[6:])
                if frame[:6] == b"data: " and b"\n" not in frame
                else to_frame(frame)
                for frame in frames
                if frame
            ]
        if len(buffer) > max_frame:
            raise DifyProtocolError(f"stream frame exceeds {max_frame} bytes")
    if buffer.strip():
        yield [to_frame(buffer.rstrip(b"\r\n"))]


def to_frame(frame: bytes) -> Frame:
    """One frame's event name and data, for any frame shape."""
    if frame == b"event: ping":
        return PING
    if frame[:6] == b"data: " and b"\n" not in frame:
        return "message", frame[6:]
    decoder = SSEDecoder()
    for line in frame.decode("utf-8", errors="replace").split("\n"):
        decoder.decode(line)
    event = decoder.decode("")
    if event is None:  # only comments or unknown fields
        return "", b""
    return event.event, event.data.encode()
