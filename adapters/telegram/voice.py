"""Telegram voice notes (Ogg/Opus) as WebM/Opus, which Dify's ``/audio-to-text`` takes.

Dify accepts mp3, mp4, mpeg, mpga, m4a, wav, webm and amr there, and Telegram records voice notes
as Opus in an Ogg container: the audio itself is fine for any speech-to-text model that takes
WebM, only the container is not. So the Opus packets are moved, untouched, from Ogg pages into a
WebM (Matroska) file: no decoding, no new dependency, a few milliseconds per note.

Ogg (RFC 3533): pages of segments; a packet ends at a segment shorter than 255 bytes. Ogg Opus
(RFC 7845): packet 1 is ``OpusHead`` (which becomes the track's CodecPrivate), packet 2
``OpusTags``, then audio; each packet's duration comes from its TOC byte (RFC 6716 §3.1). WebM:
the Matroska elements a player needs (EBML header, Info, one audio track ``A_OPUS`` with
CodecDelay = pre-skip, Clusters of SimpleBlocks), every size known since the file is built in
memory.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

OPUS_RATE = 48_000
_CLUSTER_MS = 5_000
_SEEK_PRE_ROLL_NS = 80_000_000  # RFC 7845 recommends 80 ms of pre-roll after a seek


class NotOggOpus(ValueError):
    """The bytes are not an Ogg stream carrying Opus."""


def ogg_opus_to_webm(data: bytes) -> bytes:
    packets = list(_ogg_packets(data))
    if len(packets) < 2 or not packets[0].startswith(b"OpusHead") or len(packets[0]) < 19:
        raise NotOggOpus("no OpusHead: not Ogg/Opus")
    head, audio = packets[0], [p for p in packets[2:] if p]
    channels, pre_skip = head[9], struct.unpack_from("<H", head, 10)[0]
    clusters, total = _clusters(audio)
    track = _element(0xAE, b"".join([
        _uint(0xD7, 1), _uint(0x73C5, 1), _uint(0x83, 2), _element(0x86, b"A_OPUS"),
        _element(0x63A2, head), _uint(0x56AA, pre_skip * 1_000_000_000 // OPUS_RATE),
        _uint(0x56BB, _SEEK_PRE_ROLL_NS),
        _element(0xE1, _float(0xB5, float(OPUS_RATE)) + _uint(0x9F, channels)),
    ]))  # fmt: skip
    info = _element(0x1549A966, b"".join([
        _uint(0x2AD7B1, 1_000_000), _element(0x4D80, b"difybot"), _element(0x5741, b"difybot"),
        _float(0x4489, total * 1000 / OPUS_RATE),
    ]))  # fmt: skip
    segment = _element(0x18538067, info + _element(0x1654AE6B, track) + clusters)
    return _header() + segment


def _header() -> bytes:
    return _element(0x1A45DFA3, b"".join([
        _uint(0x4286, 1), _uint(0x42F7, 1), _uint(0x42F2, 4), _uint(0x42F3, 8),
        _element(0x4282, b"webm"), _uint(0x4287, 4), _uint(0x4285, 2),
    ]))  # fmt: skip


def _clusters(packets: list[bytes]) -> tuple[bytes, int]:
    """Clusters of SimpleBlocks (timestamps in ms) and the total duration in 48 kHz samples."""
    out: list[bytes] = []
    blocks: list[bytes] = []
    start_ms = samples = 0
    for packet in packets:
        now_ms = samples * 1000 // OPUS_RATE
        if blocks and now_ms - start_ms >= _CLUSTER_MS:
            out.append(_element(0x1F43B675, _uint(0xE7, start_ms) + b"".join(blocks)))
            blocks, start_ms = [], now_ms
        relative = struct.pack(">h", now_ms - start_ms)
        blocks.append(_element(0xA3, b"\x81" + relative + b"\x80" + packet))
        samples += packet_samples(packet)
    if blocks:
        out.append(_element(0x1F43B675, _uint(0xE7, start_ms) + b"".join(blocks)))
    return b"".join(out), samples


def packet_samples(packet: bytes) -> int:
    """An Opus packet's duration in 48 kHz samples, from its TOC byte (RFC 6716 §3.1)."""
    toc = packet[0]
    config = toc >> 3
    if config < 12:
        frame = (480, 960, 1920, 2880)[config % 4]  # SILK: 10, 20, 40, 60 ms
    elif config < 16:
        frame = (480, 960)[config % 2]  # hybrid: 10, 20 ms
    else:
        frame = (120, 240, 480, 960)[config % 4]  # CELT: 2.5, 5, 10, 20 ms
    code = toc & 3
    count = (
        1 if code == 0 else 2 if code in (1, 2) else (packet[1] & 0x3F if len(packet) > 1 else 0)
    )
    return frame * count


def _ogg_packets(data: bytes) -> Iterator[bytes]:
    pos, partial = 0, b""
    while pos < len(data):
        if data[pos : pos + 4] != b"OggS" or len(data) < pos + 27:
            raise NotOggOpus(f"no Ogg page at byte {pos}")
        count = data[pos + 26]
        table = data[pos + 27 : pos + 27 + count]
        body = pos + 27 + count
        for size in table:
            partial += data[body : body + size]
            body += size
            if size < 255:
                yield partial
                partial = b""
        pos = body
    if partial:
        yield partial


# ---- EBML -------------------------------------------------------------------------------------


def _element(element_id: int, payload: bytes) -> bytes:
    return _id(element_id) + _size(len(payload)) + payload


def _id(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def _size(n: int) -> bytes:
    for length in range(1, 9):
        if n < (1 << (7 * length)) - 1:  # all ones is reserved ("unknown size")
            return ((1 << (7 * length)) | n).to_bytes(length, "big")
    raise ValueError("element too large")


def _uint(element_id: int, value: int) -> bytes:
    return _element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def _float(element_id: int, value: float) -> bytes:
    return _element(element_id, struct.pack(">d", value))
