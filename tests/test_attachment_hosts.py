"""Where attachments may come from: the platforms' own file hosts, at public addresses only.

The end-to-end cases (a payload's URL on another host, on loopback, a redirect away) are in the
platforms' attachment tests; here the address rule itself, with DNS answers scripted.
"""

from __future__ import annotations

import socket

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.files import SlackFiles
from adapters.tencent.media import BOT_MEDIA_HOSTS, tencent_files
from bot.errors import FileRefused
from bot.files.downloads import (
    GuardedFetch,
    Hop,
    PublicOnly,
    build_download_http,
    build_public_http,
    is_public,
)


class ScriptedDNS(AbstractResolver):
    """Answers every name with the addresses it was given (no network)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(hostname=host, host=address, port=port, family=family, proto=0, flags=0)
            for address in self.answers.get(host, [])
        ]

    async def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True), ("2606:4700::1111", True),
        ("127.0.0.1", False), ("::1", False), ("10.1.2.3", False), ("172.16.0.1", False),
        ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
        ("224.0.0.1", False), ("ff02::1", False), ("0.0.0.0", False), ("240.0.0.1", False),
        ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
        ("64:ff9b::7f00:1", False), ("not an address", False),
    ],
)  # fmt: skip
def test_only_public_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


async def test_dns_answers_keep_only_their_public_addresses() -> None:
    dns = ScriptedDNS({"mixed.test": ["10.0.0.7", "93.184.216.34"], "inside.test": ["127.0.0.1"]})
    resolver = PublicOnly(dns)
    assert [r["host"] for r in await resolver.resolve("mixed.test", 443)] == ["93.184.216.34"]
    with pytest.raises(OSError, match="no public address"):
        await resolver.resolve("inside.test", 443)


async def slack_download(url: str, dns: ScriptedDNS) -> None:
    fetch = GuardedFetch(build_download_http(), build_public_http(resolver=dns))
    client = AsyncWebClient(token="xoxb-test-token")  # never called: no stub to complete
    files = SlackFiles(client, fetch, token="xoxb-test-token", api_url="https://slack.com/api/")
    try:
        async with fetch.open(url, policy=files.policy, limit=1000, name="x.png"):
            raise AssertionError("fetched")
    finally:
        await fetch.aclose()


async def test_slacks_file_host_pointing_at_loopback_is_refused_before_connecting() -> None:
    dns = ScriptedDNS({"files.slack.com": ["127.0.0.1"]})
    with pytest.raises(FileRefused, match="no public address"):
        await slack_download("https://files.slack.com/files-pri/T1-F1/x.png", dns)
    assert dns.asked == ["files.slack.com"]


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/files-pri/T1-F1/x.png",  # an address, not Slack's host
        "http://files.slack.com/files-pri/T1-F1/x.png",  # Slack's host, without TLS
        "https://files.slack.com.evil.test/x.png",
        "https://slack.com.evil.test/x.png",
        "file:///etc/passwd",
    ],
)
async def test_slack_urls_off_its_file_host_are_refused_without_a_lookup(url: str) -> None:
    dns = ScriptedDNS({})
    with pytest.raises(FileRefused):
        await slack_download(url, dns)
    assert dns.asked == []


async def test_an_address_literal_is_judged_without_dns() -> None:
    fetch = GuardedFetch(build_download_http(), build_public_http(resolver=ScriptedDNS({})))
    try:
        for url in ("https://[::ffff:127.0.0.1]/x", "https://169.254.169.254/latest/meta-data"):
            with pytest.raises(FileRefused, match="not a public address"):
                async with fetch.open(url, policy=lambda _: Hop(), limit=10, name="x"):
                    pass
    finally:
        await fetch.aclose()


def test_wecom_bot_media_come_from_tencent_storage_or_the_configured_api() -> None:
    policy = tencent_files(*BOT_MEDIA_HOSTS, api_base="http://127.0.0.1:9000")
    cos = "https://ww-aibot-img-1258476243.cos.ap-guangzhou.myqcloud.com/BHoPdA3/x.png?sign=1"
    assert policy(httpx.URL(cos)) == Hop()  # public addresses only
    assert policy(httpx.URL("http://127.0.0.1:9000/cdn/x")) == Hop(configured=True)
    for refused in (
        "http://ww-aibot-img-1.cos.ap-guangzhou.myqcloud.com/x",  # no TLS
        "https://127.0.0.1:9001/cdn/x",
        "https://myqcloud.com.evil.test/x",
    ):
        assert policy(httpx.URL(refused)) is None
