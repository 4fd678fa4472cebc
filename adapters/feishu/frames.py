"""The long connection's frames: one protobuf ``pbbp2.Frame`` per binary websocket message.

The schema lark-oapi ships (``lark_oapi/ws/pb/pbbp2.proto``, proto2): SeqID = 1 and LogID = 2
(uint64), service = 3 and method = 4 (int32; method 0 = control, 1 = data), headers = 5
(repeated ``{key = 1, value = 2}``), payload_encoding = 6, payload_type = 7, payload = 8
(bytes), LogIDNew = 9. Six fields of varints and lengths: a codec of its own costs less than a
protobuf runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1


class FrameError(ValueError):
    """The bytes are not a frame."""


@dataclass
class Frame:
    method: int
    service: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: bytes = b""
    seq_id: int = 0
    log_id: int = 0
    log_id_new: str = ""

    def header(self, key: str, default: str = "") -> str:
        return next((value for name, value in self.headers if name == key), default)


def encode(frame: Frame) -> bytes:
    out = bytearray()
    for number, value in ((1, frame.seq_id), (2, frame.log_id), (3, frame.service),
                          (4, frame.method)):  # fmt: skip
        out += _varint(number << 3) + _varint(value & 0xFFFFFFFFFFFFFFFF)
    for key, text in frame.headers:
        out += _bytes(5, _bytes(1, key.encode()) + _bytes(2, text.encode()))
    if frame.payload:
        out += _bytes(8, frame.payload)
    if frame.log_id_new:
        out += _bytes(9, frame.log_id_new.encode())
    return bytes(out)


def decode(data: bytes) -> Frame:
    frame = Frame(method=-1)
    required = {1, 2, 3, 4}
    for number, value in _fields(data):
        required.discard(number)
        if isinstance(value, int):
            if number in (3, 4) and value >= 1 << 63:
                value -= 1 << 64
            name = {1: "seq_id", 2: "log_id", 3: "service", 4: "method"}.get(number)
            if name:
                setattr(frame, name, value)
        elif number == 5:
            parts = dict(_fields(value))
            key, text = parts.get(1, b""), parts.get(2, b"")
            if not isinstance(key, bytes) or not isinstance(text, bytes):
                raise FrameError("a header is not two strings")
            frame.headers.append((key.decode(), text.decode()))
        elif number == 8:
            frame.payload = value
        elif number == 9:
            frame.log_id_new = value.decode()
    if required:
        raise FrameError(f"frame lacks fields {sorted(required)}")
    return frame


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    at = 0
    while at < len(data):
        key, at = _read_varint(data, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _read_varint(data, at)
            fields.append((number, value))
        elif wire == 2:
            length, at = _read_varint(data, at)
            if at + length > len(data):
                raise FrameError("a field runs past the end")
            fields.append((number, data[at : at + length]))
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise FrameError(f"wire type {wire}")
    return fields


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise FrameError("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value
