"""WeChat's servers calling us: signed (and encrypted) pushes with WeChat's real retry timing.

``OfficialAccountServer.push`` waits ``timeout`` (5 s on the real platform, scaled down in tests)
for each delivery, hangs up when it passes and delivers the same MsgId again, three deliveries in
all; ``success`` or an empty body ends it without a reply. ``PushOutcome.failed`` is the case in
which the user would see "该公众号暂时无法提供服务".
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import aiohttp
from defusedxml import ElementTree

from tests.fakes.wechat_crypto import TencentCrypto, sign


@dataclass
class Delivery:
    status: int | None  # None: WeChat gave up waiting and hung up
    body: bytes
    seconds: float


@dataclass
class PushOutcome:
    deliveries: list[Delivery] = field(default_factory=list)
    reply: dict[str, str] | None = None  # the passive reply's fields, decrypted

    @property
    def content(self) -> str | None:
        return None if self.reply is None else self.reply.get("Content")

    @property
    def failed(self) -> bool:
        return all(d.status is None for d in self.deliveries)


def xml_fields(body: bytes) -> dict[str, str]:
    return {child.tag: child.text or "" for child in ElementTree.fromstring(body)}


def to_xml(fields: dict[str, str | int]) -> bytes:
    inner = "".join(
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}>{escape(v)}</{k}>"
        for k, v in fields.items()
    )
    return f"<xml>{inner}</xml>".encode()


class OfficialAccountServer:
    """Plays the WeChat platform for one Official Account (plain, compat or safe mode)."""

    def __init__(
        self,
        url: str,
        *,
        token: str,
        app_id: str,
        aes_key: str | None = None,
        mode: str = "plain",
        timeout: float = 5.0,
        deliveries: int = 3,
        account: str = "gh_97417a04a28d",
    ) -> None:
        self.url, self.token, self.mode, self.account = url, token, mode, account
        self.urls = [url]  # delivery i goes to urls[i % len]: replicas behind a balancer
        self.timeout, self.deliveries = timeout, deliveries
        self.crypto = TencentCrypto(aes_key, app_id) if aes_key else None

    def message(
        self, user: str, msg_id: int | str, content: str, kind: str = "text"
    ) -> dict[str, str | int]:
        body: dict[str, str | int] = {
            "ToUserName": self.account, "FromUserName": user, "CreateTime": int(time.time()),
            "MsgType": kind, "Content": content, "MsgId": int(msg_id),
        }  # fmt: skip
        return body

    def signed(
        self, fields: dict[str, str | int], *, timestamp: int | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The query and body of one delivery, signed (and encrypted) as WeChat does; every
        delivery is signed afresh (its own timestamp and nonce)."""
        stamp = int(time.time()) if timestamp is None else timestamp
        timestamp_text, nonce = str(stamp), str(random.randrange(10**8, 10**10))
        query = {"signature": sign(self.token, timestamp_text, nonce), "timestamp": timestamp_text,
                 "nonce": nonce, "openid": str(fields.get("FromUserName", ""))}  # fmt: skip
        plain = to_xml(fields)
        if self.mode == "plain" or self.crypto is None:
            return query, plain
        encrypt = self.crypto.encrypt(plain)
        signature = sign(self.token, timestamp_text, nonce, encrypt)
        query.update(encrypt_type="aes", msg_signature=signature)
        outer: dict[str, str | int] = {"ToUserName": self.account, "Encrypt": encrypt}
        if self.mode == "compat":
            outer = {**fields, "Encrypt": encrypt}
        return query, to_xml(outer)

    async def push(self, fields: dict[str, str | int]) -> PushOutcome:
        outcome = PushOutcome()
        connector = aiohttp.TCPConnector(force_close=True)  # every delivery its own connection
        async with aiohttp.ClientSession(connector=connector) as session:
            for attempt in range(self.deliveries):
                query, body = self.signed(fields)
                url = self.urls[attempt % len(self.urls)]
                delivery = await self._deliver(session, url, query, body)
                outcome.deliveries.append(delivery)
                if delivery.status is not None:
                    outcome.reply = self.open_reply(delivery, query["nonce"])
                    break
        return outcome

    async def _deliver(
        self, session: aiohttp.ClientSession, url: str, query: dict[str, str], body: bytes
    ) -> Delivery:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                async with session.post(url, params=query, data=body) as response:
                    return Delivery(
                        response.status, await response.read(), time.monotonic() - started
                    )
        except TimeoutError:
            return Delivery(None, b"", time.monotonic() - started)

    def open_reply(self, delivery: Delivery, nonce: str) -> dict[str, str] | None:
        if delivery.status != 200:
            raise AssertionError(f"WeChat got HTTP {delivery.status}: the user sees an error")
        if delivery.body in (b"", b"success"):
            return None
        fields = xml_fields(delivery.body)
        if "Encrypt" not in fields:
            return fields
        assert self.crypto is not None
        assert fields["Nonce"] == nonce, "the reply must echo the request's nonce"
        expected = sign(self.token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        assert fields["MsgSignature"] == expected, "reply signature does not check out"
        return xml_fields(self.crypto.decrypt(fields["Encrypt"]))

    async def verify_url(self, echostr: str, *, token: str | None = None) -> tuple[int, str]:
        timestamp, nonce = str(int(time.time())), "1514711492"
        query = {"signature": sign(token or self.token, timestamp, nonce), "timestamp": timestamp,
                 "nonce": nonce, "echostr": echostr}  # fmt: skip
        async with aiohttp.ClientSession() as session, session.get(self.url, params=query) as r:
            return r.status, await r.text()
