"""Inbound callback checks shared by every WeChat surface: parameters, freshness, signature,
decryption, replay memory, refusal.

Every route goes through ``adapters.webhooks`` (cheap checks before the body, body deadline and
cap). Before the body: the parameters a signed request carries, and its ``timestamp`` within
±300 s of our clock; a plain ``signature`` (sha1 of token, timestamp and nonce: it covers no
body) is checked there too. After the body: ``msg_signature`` over the ciphertext, decryption,
and the replay memory: a (timestamp, nonce, signature) seen in the last 10 minutes, on any
replica, is refused, so a signed query string from a proxy's access log is worth nothing.

With an AES key, only encrypted requests are taken (``msg_signature`` covers the message); a
plain one is a downgrade and is refused, unless compatible mode was asked for, in which case it
is still held to its signature, timestamp and nonce. A refused request gets a bare 400/403/413
and nothing of it is processed; the reason goes to the log at INFO, never to the caller.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from aiohttp import web

from adapters.tencent.crypto import MessageCrypto, is_valid_signature
from adapters.tencent.xml import MAX_BODY, encrypted_reply, parse_xml
from adapters.webhooks import Handler, guard_of
from bot.errors import CallbackRejected
from bot.stores import SeenCallbacks

log = logging.getLogger(__name__)

TIMESTAMP_WINDOW = 300.0  # seconds either side of our clock
PLAIN = ("signature", "timestamp", "nonce")
SEALED = ("msg_signature", "timestamp", "nonce")


def params(query: Mapping[str, str], *names: str) -> list[str]:
    """The named query parameters; a missing one is a 403 (every WeChat request is signed)."""
    values = [query.get(name, "") for name in names]
    if not all(values):
        raise CallbackRejected(f"missing one of {', '.join(names)}", status=403)
    return values


@dataclass
class CallbackChecks:
    """The checks of one route (``scope``: the route and its account, for the replay memory).
    ``crypto`` None: plain mode (Official Account without a key); ``compatible``: with a key,
    plain requests are taken too."""

    token: str
    crypto: MessageCrypto | None
    seen: SeenCallbacks
    scope: str
    compatible: bool = False
    clock: Callable[[], float] = field(default=time.time)

    def is_sealed(self, query: Mapping[str, str], *, always: bool = False) -> bool:
        """Whether this request must be opened with the key (and so carry ``msg_signature``)."""
        if self.crypto is None:
            return False
        if always or query.get("encrypt_type") == "aes":
            return True
        if self.compatible:
            return False
        raise CallbackRejected("plain request refused: an AES key is set (safe mode)", status=403)

    def precheck(self, query: Mapping[str, str], *, sealed: bool) -> None:
        """Before the body: parameters, freshness, and a plain signature (it covers no body)."""
        given, timestamp, nonce = params(query, *(SEALED if sealed else PLAIN))
        if not timestamp.isdigit() or abs(self.clock() - int(timestamp)) > TIMESTAMP_WINDOW:
            raise CallbackRejected("timestamp outside the 5-minute window", status=403)
        if not sealed and not is_valid_signature(given, self.token, timestamp, nonce):
            raise CallbackRejected("bad signature", status=403)

    async def first_time(self, query: Mapping[str, str], *, sealed: bool) -> None:
        """After the signature checked out: refuse it if it was seen before (a replay)."""
        names = SEALED if sealed else PLAIN
        given, timestamp, nonce = (query[name] for name in names)
        if not await self.seen.first_time(self.scope, timestamp, nonce, given.lower()):
            raise CallbackRejected(
                "replayed: this timestamp, nonce and signature were seen", status=403
            )

    async def open_echostr(self, query: Mapping[str, str]) -> bytes:
        """WeCom URL verification: the encrypted ``echostr``, checked, remembered, decrypted."""
        assert self.crypto is not None
        given, timestamp, nonce, echostr = params(query, *SEALED, "echostr")
        # A '+' that arrived unencoded reads back as a space; base64 never contains spaces.
        opened = self.crypto.open(given, timestamp, nonce, echostr.replace(" ", "+"))
        await self.first_time(query, sealed=True)
        return opened

    async def open_xml(self, query: Mapping[str, str], body: bytes, *, sealed: bool) -> OpenedXml:
        """A verified XML push: encrypted (``msg_signature`` over ``Encrypt``) or plain (its
        signature was checked before the body). In compatible mode an encrypted body also
        carries plain fields: only the encrypted ones are trusted."""
        nonce = query.get("nonce", "")
        if sealed:
            assert self.crypto is not None
            given, timestamp, _ = params(query, *SEALED)
            inner = self.crypto.open(given, timestamp, nonce, parse_xml(body).get("Encrypt", ""))
            await self.first_time(query, sealed=True)
            return OpenedXml(parse_xml(inner), encrypted=True, nonce=nonce)
        await self.first_time(query, sealed=False)
        return OpenedXml(parse_xml(body), encrypted=False, nonce=nonce)


@dataclass(frozen=True, slots=True)
class OpenedXml:
    """A verified push: its fields, and whether the reply must be encrypted (and with what)."""

    fields: dict[str, str]
    encrypted: bool
    nonce: str


Precheck = Callable[[web.Request], None]


def add_callback_route(
    app: web.Application,
    method: str,
    path: str,
    handler: Handler,
    *,
    precheck: Precheck,
    read_body: bool = True,
) -> None:
    """A route behind the shared webhook guard (a ``CallbackRejected`` becomes its bare
    status there)."""
    route = guard_of(app).route(handler, max_body=MAX_BODY, precheck=precheck,
                                read_body=read_body)  # fmt: skip
    app.router.add_route(method, path, route)


def seal_xml(crypto: MessageCrypto, reply: bytes, *, nonce: str, timestamp: int) -> bytes:
    """An XML reply encrypted for safe mode (WeChat wants the request's nonce back)."""
    sealed = crypto.seal(reply, timestamp=str(timestamp), nonce=nonce)
    return encrypted_reply(
        encrypt=sealed.encrypt, signature=sealed.signature, timestamp=sealed.timestamp, nonce=nonce
    )
