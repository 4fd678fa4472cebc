"""WeCom's servers calling us: the self-built app's encrypted XML and the AI bot's encrypted JSON.

``AIBotServer.converse`` plays WeCom's stream protocol: post the message, then poll with
``stream`` refresh callbacks every ``every`` seconds (about 1 s on the real platform) until a
reply says ``finish``, returning every stream state it saw.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.fakes.wechat_crypto import TencentCrypto, sign
from tests.fakes.wechat_push import to_xml


def _stamp() -> tuple[str, str]:
    return str(int(time.time())), str(random.randrange(10**8, 10**10))


async def _verify(url: str, token: str, crypto: TencentCrypto, echostr: str) -> tuple[int, str]:
    timestamp, nonce = _stamp()
    encrypted = crypto.encrypt(echostr.encode())
    query = {"msg_signature": sign(token, timestamp, nonce, encrypted), "timestamp": timestamp,
             "nonce": nonce, "echostr": encrypted}  # fmt: skip
    async with aiohttp.ClientSession() as session, session.get(url, params=query) as response:
        return response.status, await response.text()


class WeComServer:
    """Plays WeCom for one self-built app (callbacks are always encrypted; receive id = CorpID)."""

    def __init__(self, url: str, *, token: str, aes_key: str, corp_id: str, agent_id: str) -> None:
        self.url, self.token, self.corp_id, self.agent_id = url, token, corp_id, agent_id
        self.crypto = TencentCrypto(aes_key, corp_id)

    def message(self, user: str, msg_id: int, content: str, kind: str = "text") -> dict[str, Any]:
        return {"ToUserName": self.corp_id, "FromUserName": user, "CreateTime": int(time.time()),
                "MsgType": kind, "Content": content, "MsgId": msg_id,
                "AgentID": int(self.agent_id)}  # fmt: skip

    async def verify_url(self, echostr: str) -> tuple[int, str]:
        return await _verify(self.url, self.token, self.crypto, echostr)

    def signed(
        self, fields: dict[str, Any], *, signature: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The query and body of one callback, encrypted and signed as WeCom does."""
        timestamp, nonce = _stamp()
        encrypt = self.crypto.encrypt(to_xml(fields))
        query = {"msg_signature": signature or sign(self.token, timestamp, nonce, encrypt),
                 "timestamp": timestamp, "nonce": nonce}  # fmt: skip
        body = to_xml(
            {"ToUserName": self.corp_id, "Encrypt": encrypt, "AgentID": int(self.agent_id)}
        )
        return query, body

    async def push(
        self, fields: dict[str, Any], *, signature: str | None = None
    ) -> tuple[int, str]:
        return await self.send(*self.signed(fields, signature=signature))

    async def send(self, query: dict[str, str], body: bytes) -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, params=query, data=body) as response,
        ):
            return response.status, await response.text()


class AIBotServer:
    """Plays WeCom for one AI bot in URL-callback mode (JSON; receive id is empty)."""

    def __init__(self, url: str, *, token: str, aes_key: str, bot_id: str = "AIBOTID") -> None:
        self.url, self.token, self.bot_id = url, token, bot_id
        self.crypto = TencentCrypto(aes_key, "")

    def message(
        self, msg_id: str, text: str, *, user: str = "zhangsan", response_url: str = ""
    ) -> dict[str, Any]:
        return {"msgid": msg_id, "aibotid": self.bot_id, "chattype": "single",
                "from": {"userid": user}, "response_url": response_url, "msgtype": "text",
                "text": {"content": text}}  # fmt: skip

    def refresh(self, stream_id: str, *, user: str = "zhangsan") -> dict[str, Any]:
        return {"msgid": f"refresh-{random.randrange(10**9)}", "aibotid": self.bot_id,
                "chattype": "single", "from": {"userid": user}, "msgtype": "stream",
                "stream": {"id": stream_id}}  # fmt: skip

    async def verify_url(self, echostr: str) -> tuple[int, str]:
        return await _verify(self.url, self.token, self.crypto, echostr)

    def signed(self, payload: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """The query and body of one callback, encrypted and signed as WeCom does."""
        timestamp, nonce = _stamp()
        encrypt = self.crypto.encrypt(json.dumps(payload, ensure_ascii=False).encode())
        query = {"msg_signature": sign(self.token, timestamp, nonce, encrypt),
                 "timestamp": timestamp, "nonce": nonce}  # fmt: skip
        return query, json.dumps({"encrypt": encrypt}).encode()

    async def post(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        """One callback; the decrypted reply (None for an empty one)."""
        query, body = self.signed(payload)
        nonce = query["nonce"]
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, params=query, data=body) as response,
        ):
            assert response.status == 200, f"HTTP {response.status}"
            raw = await response.read()
        if not raw:
            return None
        reply = json.loads(raw)
        assert reply["nonce"] == nonce
        expected = sign(self.token, str(reply["timestamp"]), reply["nonce"], reply["encrypt"])
        assert reply["msgsignature"] == expected, "reply signature does not check out"
        result: dict[str, Any] = json.loads(self.crypto.decrypt(reply["encrypt"]))
        return result

    async def converse(
        self,
        payload: dict[str, Any],
        *,
        every: float = 0.05,
        limit: float = 30.0,
        on_state: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """The message, then refresh polls (WeCom's own cadence) until ``finish``; ``on_state``
        sees each polled state as it comes."""
        first = await self.post(payload)
        assert first is not None and first["msgtype"] == "stream"
        states = [first["stream"]]
        async with asyncio.timeout(limit):
            while not states[-1]["finish"]:
                await asyncio.sleep(every)  # the platform's polling interval, not a test wait
                reply = await self.post(self.refresh(states[0]["id"]))
                assert reply is not None
                states.append(reply["stream"])
                if on_state is not None:
                    on_state(states[-1])
        return states
