"""Inbound callback checks shared by every WeChat surface: size, signature, decryption, refusal.

A request that fails a check gets a bare 400/403/413 and nothing of it is processed; the reason
goes to the log at INFO, never to the caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiohttp import web

from adapters.wechat.crypto import MessageCrypto, is_valid_signature
from adapters.wechat.errors import CallbackRejected
from adapters.wechat.payloads import MAX_BODY, encrypted_reply, parse_xml

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def guarded(handler: Handler) -> Handler:
    """Turn ``CallbackRejected`` into its bare status: no detail for a forger to learn from."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except CallbackRejected as exc:
            log.info("%s %s refused: %s", request.method, request.path, exc.message)
            return web.Response(status=exc.status or 400, text="")

    return wrapper


async def read_body(request: web.Request, *, limit: int = MAX_BODY) -> bytes:
    """The body, refused with 413 past ``limit`` before it is all read."""
    if request.content_length is not None and request.content_length > limit:
        raise CallbackRejected("body too large", status=413)
    body = bytearray()
    while chunk := await request.content.read(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise CallbackRejected("body too large", status=413)
    return bytes(body)


def params(query: Mapping[str, str], *names: str) -> list[str]:
    """The named query parameters; a missing one is a 403 (every WeChat request is signed)."""
    values = [query.get(name, "") for name in names]
    if not all(values):
        raise CallbackRejected(f"missing one of {', '.join(names)}", status=403)
    return values


def check_plain_signature(query: Mapping[str, str], token: str) -> None:
    """Official Account plain signature: sha1 over token, timestamp, nonce."""
    given, timestamp, nonce = params(query, "signature", "timestamp", "nonce")
    if not is_valid_signature(given, token, timestamp, nonce):
        raise CallbackRejected("bad signature", status=403)


def open_echostr(query: Mapping[str, str], crypto: MessageCrypto) -> bytes:
    """WeCom URL verification: the encrypted ``echostr``, checked and decrypted."""
    given, timestamp, nonce, echostr = params(
        query, "msg_signature", "timestamp", "nonce", "echostr"
    )
    # A '+' that arrived unencoded reads back as a space; base64 never contains spaces.
    return crypto.open(given, timestamp, nonce, echostr.replace(" ", "+"))


@dataclass(frozen=True, slots=True)
class OpenedXml:
    """A verified push: its fields, and whether the reply must be encrypted (and with what)."""

    fields: dict[str, str]
    encrypted: bool
    nonce: str


def open_xml(
    query: Mapping[str, str],
    body: bytes,
    *,
    token: str,
    crypto: MessageCrypto | None,
    encrypted_only: bool = False,
) -> OpenedXml:
    """Verify and open an XML push: encrypted (OA safe/compatible mode, WeCom always) or plain.

    In compatible mode the body also carries the plain fields; with a key, only the encrypted
    ones are trusted (``msg_signature`` covers the ciphertext, ``signature`` covers no body);
    without one, the plain fields are read as in plain mode (a safe-mode push then lacks them: 400).
    """
    if crypto is not None and (encrypted_only or query.get("encrypt_type") == "aes"):
        given, timestamp, nonce = params(query, "msg_signature", "timestamp", "nonce")
        outer = parse_xml(body)
        inner = crypto.open(given, timestamp, nonce, outer.get("Encrypt", ""))
        return OpenedXml(parse_xml(inner), encrypted=True, nonce=nonce)
    check_plain_signature(query, token)
    return OpenedXml(parse_xml(body), encrypted=False, nonce=query.get("nonce", ""))


def seal_xml(crypto: MessageCrypto, reply: bytes, *, nonce: str, timestamp: int) -> bytes:
    """An XML reply encrypted for safe mode (WeChat wants the request's nonce back)."""
    sealed = crypto.seal(reply, timestamp=str(timestamp), nonce=nonce)
    return encrypted_reply(
        encrypt=sealed.encrypt, signature=sealed.signature, timestamp=sealed.timestamp, nonce=nonce
    )
