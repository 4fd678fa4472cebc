"""The long connection's wire format: one protobuf ``pbbp2.Frame`` per binary websocket message.

Written from the schema lark-oapi ships (``lark_oapi/ws/pb/pbbp2_pb2.py``, proto2)::

    message Header { required string key = 1; required string value = 2; }
    message Frame {
      required uint64 SeqID = 1;   required uint64 LogID = 2;
      required int32 service = 3;  required int32 method = 4;   // 0 control, 1 data
      repeated Header headers = 5;
      optional string payload_encoding = 6;  optional string payload_type = 7;
      optional bytes payload = 8;            optional string LogIDNew = 9;
    }

A hand-written codec (varints and length-delimited fields) keeps the fake independent of the
SDK's generated code, so the SDK's parser checks the fake rather than agreeing with itself.
The required fields are always written: proto2 parsers refuse a frame without them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROL = 0
DATA = 1


@dataclass
class Frame:
    method: int
    service: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    payload: bytes = b""
    seq_id: int = 0
    log_id: int = 0
    payload_encoding: str = ""
    payload_type: str = ""
    log_id_new: str = ""

    def header(self, key: str) -> str | None:
        return next((value for name, value in self.headers if name == key), None)


def encode(frame: Frame) -> bytes:
    out = bytearray()
    for number, value in ((1, frame.seq_id), (2, frame.log_id)):
        out += _key(number, 0) + _varint(value)
    for number, value in ((3, frame.service), (4, frame.method)):
        out += _key(number, 0) + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int32: negatives as 64-bit
    for name, text in frame.headers:
        header = _bytes_field(1, name.encode()) + _bytes_field(2, text.encode())
        out += _bytes_field(5, header)
    if frame.payload_encoding:
        out += _bytes_field(6, frame.payload_encoding.encode())
    if frame.payload_type:
        out += _bytes_field(7, frame.payload_type.encode())
    if frame.payload:
        out += _bytes_field(8, frame.payload)
    if frame.log_id_new:
        out += _bytes_field(9, frame.log_id_new.encode())
    return bytes(out)


def decode(data: bytes) -> Frame:
    frame = Frame(method=-1)
    seen: set[int] = set()
    for number, value in _fields(data):
        seen.add(number)
        if number in (1, 2, 3, 4):
            assert isinstance(value, int), f"field {number} is not a varint"
            signed = value - (1 << 64) if number in (3, 4) and value >= 1 << 63 else value
            setattr(frame, ("seq_id", "log_id", "service", "method")[number - 1], signed)
        elif number == 5:
            assert isinstance(value, bytes), "header is not length-delimited"
            parts = dict(_fields(value))
            key, val = parts.get(1), parts.get(2)
            assert isinstance(key, bytes) and isinstance(val, bytes), "header lacks key or value"
            frame.headers.append((key.decode(), val.decode()))
        elif number == 8:
            assert isinstance(value, bytes)
            frame.payload = value
        elif number in (6, 7, 9):
            assert isinstance(value, bytes)
            name = {6: "payload_encoding", 7: "payload_type", 9: "log_id_new"}[number]
            setattr(frame, name, value.decode())
    missing = {1, 2, 3, 4} - seen
    if missing:
        raise ValueError(f"frame lacks required fields {sorted(missing)}")
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
                raise ValueError("length-delimited field runs past the end")
            fields.append((number, data[at : at + length]))
            at += length
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4  # fixed64 / fixed32: not in this schema, skipped
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated or overlong varint")
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


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _bytes_field(number: int, value: bytes) -> bytes:
    return _key(number, 2) + _varint(len(value)) + value
