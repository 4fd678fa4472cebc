"""The chaos run's WeChat Official Account and WeCom app users: callbacks to either replica, as a
load balancer spreads them, delivered again elsewhere when a replica does not answer in time, and
the verdict on what each user finally got (passive replies and pushes alike)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import aiohttp

from tests.fakes.wechat import FakeWeChatAPI
from tests.fakes.wechat_push import Delivery, OfficialAccountServer
from tests.fakes.wecom_push import WeComServer

TOKEN = "chaos-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
AGENT = "1000002"
DELIVERIES = 3  # WeChat and WeCom deliver a callback three times, 5 s apart
TIMEOUT = 5.0


@dataclass
class Asked:
    platform: str  # "wechat" or "wecom"
    user: str
    marker: str
    at: float
    passive: str = ""  # the Official Account's passive reply, if one carried text


@dataclass
class TencentRun:
    asked: list[Asked] = field(default_factory=list)
    deliveries: int = 0
    redeliveries: int = 0


def tencent_env(api: FakeWeChatAPI) -> dict[str, str]:
    """A WeCom app and a verified Official Account (slow answers are pushed), both on ``api``."""
    return {
        "WECOM_CORP_ID": api.corp_id, "WECOM_AGENT_ID": AGENT, "WECOM_SECRET": api.corp_secret,
        "WECOM_TOKEN": TOKEN, "WECOM_ENCODING_AES_KEY": AES_KEY, "WECOM_API_BASE": api.url,
        "WECHAT_TOKEN": TOKEN, "WECHAT_APP_ID": api.app_id, "WECHAT_APP_SECRET": api.app_secret,
        "WECHAT_API_BASE": api.url, "WECHAT_ACCOUNT_VERIFIED": "true", "WECHAT_LOCALE": "en",
    }  # fmt: skip


async def tencent_session(
    platform: str,
    user: str,
    markers: list[str],
    urls: list[str],
    api: FakeWeChatAPI,
    run: TencentRun,
    rng: random.Random,
) -> None:
    """One WeChat or WeCom user asking ``markers`` in turn, each when the last was delivered."""
    official = OfficialAccountServer("", token=TOKEN, app_id=api.app_id, timeout=TIMEOUT)
    wecom = WeComServer("", token=TOKEN, aes_key=AES_KEY, corp_id=api.corp_id, agent_id=AGENT)
    for n, marker in enumerate(markers):
        await asyncio.sleep(rng.uniform(1.0, 8.0))  # people type
        asked = Asked(platform, user, marker, time.monotonic())
        run.asked.append(asked)
        msg_id = int(marker[1:]) * 10 + n
        if platform == "wecom":
            fields = wecom.message(user, msg_id, marker)
            await _deliver(urls, "/wecom", partial(wecom.signed, fields), run, rng)
            continue
        push = official.message(user, msg_id, marker)
        got = await _deliver(urls, "/wechat", partial(official.signed, push), run, rng)
        if got is not None:
            delivery, nonce = got
            reply = official.open_reply(delivery, nonce)
            asked.passive = (reply or {}).get("Content", "")


async def _deliver(
    urls: list[str],
    path: str,
    signed: Callable[[], tuple[dict[str, str], bytes]],
    run: TencentRun,
    rng: random.Random,
) -> tuple[Delivery, str] | None:
    """Deliver one callback to a random replica, again (to another) when it does not answer
    within the timeout or cannot be reached: WeChat's redelivery over a load balancer."""
    order = rng.sample(urls, len(urls))
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        for attempt in range(DELIVERIES):
            query, body = signed()
            run.deliveries += 1
            run.redeliveries += attempt > 0
            started = time.monotonic()
            try:
                async with (
                    asyncio.timeout(TIMEOUT),
                    session.post(order[attempt % len(order)] + path, params=query, data=body) as r,
                ):
                    if r.status == 200:
                        seconds = time.monotonic() - started
                        return Delivery(200, await r.read(), seconds), query["nonce"]
            except (aiohttp.ClientError, TimeoutError):
                await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    return None


def tencent_verdict(run: TencentRun, api: FakeWeChatAPI) -> dict[str, dict[str, int]]:
    """Per platform: how many asked, answered (once), more than once, never. An answer names
    its question (the fake Dify echoes it first), the failure notices keep the part shown."""
    sent: dict[str, list[str]] = {"wecom": [], "wechat": []}
    for call in api.calls_to("/cgi-bin/message/send"):
        sent["wecom"].append(str(call.json["markdown"]["content"]))
    for call in api.calls_to("/cgi-bin/message/custom/send"):
        sent["wechat"].append(str(call.json["text"]["content"]))
    result: dict[str, dict[str, int]] = {}
    for platform in ("wecom", "wechat"):
        asked = [a for a in run.asked if a.platform == platform]
        counts = {"sent": len(asked), "answered": 0, "duplicates": 0, "lost": 0}
        for one in asked:
            got = [t for t in (*sent[platform], one.passive) if one.marker in t]
            counts["answered"] += bool(got)
            counts["duplicates"] += len(got) > 1
            counts["lost"] += not got
        result[platform] = counts
    return result
