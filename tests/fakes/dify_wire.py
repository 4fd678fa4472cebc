"""Byte-level wire format of a Dify 1.13.2 server: JSON flavours, headers, errors, capture files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "dify"

# Sent by the real server on every response (see any *.http capture); Date/Connection are aiohttp's.
DIFY_HEADERS = {
    "Server": "gunicorn",
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "X-Env, X-Trace-Id, X-Version",
    "X-Version": "1.13.2",
    "X-Env": "PRODUCTION",
    "Vary": "Cookie",
}
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"
# Headers aiohttp computes itself; a replay must not send the captured values.
HOP_BY_HOP = frozenset({"transfer-encoding", "content-length", "connection", "date", "server"})
PING_FRAME = b"event: ping\n\n"
NOT_FOUND_URL = (
    "The requested URL was not found on the server. If you entered the URL manually please check"
    " your spelling and try again."
)


def reason(status: int) -> str:
    """Werkzeug's upper-case reason phrase (``401 UNAUTHORIZED``), as gunicorn sends it."""
    try:
        return HTTPStatus(status).phrase.upper()
    except ValueError:
        return "UNKNOWN"


def sse_frame(event: dict[str, Any], *, spaced: bool = False) -> bytes:
    """One ``data:`` frame. 1.13.2 uses orjson (compact, raw UTF-8); older servers json.dumps."""
    if spaced:
        text = json.dumps(event)
    else:
        text = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return b"data: " + text.encode() + b"\n\n"


def api_json(obj: Any) -> bytes:
    """Flask-RESTX bodies: compact, ASCII-only, ``/`` escaped as ``\\/``, trailing newline."""
    text = json.dumps(obj, separators=(",", ":"))
    # "/" never appears in JSON syntax, only inside strings, so a plain replace is exact.
    return text.replace("/", "\\/").encode() + b"\n"


def blocking_json(obj: Any) -> bytes:
    """Blocking generate bodies use ``json.dumps`` defaults (``", "``), no trailing newline."""
    return json.dumps(obj).encode()


def json_response(
    obj: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A regular API answer (``Content-Type: application/json``)."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(
        body=api_json(obj), status=status, reason=reason(status), headers=all_headers
    )


def blocking_response(obj: Any) -> web.Response:
    """A blocking chat/workflow answer (``application/json; charset=utf-8``)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    return web.Response(body=blocking_json(obj), status=200, reason="OK", headers=headers)


def error_response(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None
) -> web.Response:
    """Dify's error envelope ``{"code","message","status"}``."""
    return json_response(
        {"code": code, "message": message, "status": status}, status=status, headers=headers
    )


def not_exists_message(route: str) -> str:
    """Flask-RESTX appends a "did you mean" hint to 404s raised inside these two routes."""
    hints = {
        "/chat-messages": (
            "/v1/chat-messages or /api/chat-messages or /v1/chat-messages/<string:task_id>/stop"
        ),
        "/messages": "/v1/messages or /v1/chat-messages or /api/messages",
    }
    base = "Conversation Not Exists."
    if route not in hints:
        return base
    return f"{base} You have requested this URI [/v1{route}] but did you mean {hints[route]} ?"


@dataclass(frozen=True, slots=True)
class CapturedHTTP:
    """A ``*.http`` capture: status line, headers as received, body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.headers if k.lower() == "content-type"), "")


def load_http(name: str) -> CapturedHTTP:
    raw = (FIXTURES / f"{name}.http").read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return CapturedHTTP(status=int(status_line.split()[1]), headers=headers, body=body)


@dataclass(frozen=True, slots=True)
class CapturedStream:
    """A ``*.sse.raw`` body with its ``*.meta.json`` (status, headers, chunk arrival times)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    chunk_timing: list[tuple[float, int]]


def load_stream(name: str) -> CapturedStream:
    meta = json.loads((FIXTURES / f"{name}.meta.json").read_text())
    # The first batch stores "status": 200, the second "status_line": "HTTP/1.1 200 OK".
    status = int(meta["status"]) if "status" in meta else int(meta["status_line"].split()[1])
    return CapturedStream(
        status=status,
        headers=[(str(k), str(v)) for k, v in meta["headers"]],
        body=(FIXTURES / f"{name}.sse.raw").read_bytes(),
        chunk_timing=[(float(t), int(n)) for t, n in meta.get("chunk_timing_s", [])],
    )


def load_json(name: str) -> Any:
    """A ``*.response.json`` body, or the body of a ``*.http`` capture."""
    path = FIXTURES / f"{name}.response.json"
    if path.exists():
        return json.loads(path.read_bytes())
    return json.loads(load_http(name).body)


def replay_headers(headers: list[tuple[str, str]]) -> dict[str, str]:
    return {k: v for k, v in headers if k.lower() not in HOP_BY_HOP}
