"""Files as byte streams with a size cap, and URL fetches that decide per hop where they may go.

A ``Download`` is an open stream: the caller reads ``chunks`` inside the source's context, so a
cancelled or refused transfer closes its connection. ``capped`` enforces the limit while bytes
arrive (a lying or missing Content-Length never buffers more than the limit).

``GuardedFetch`` follows redirects itself, asking the source's ``HostPolicy`` at every hop
whether the host may be contacted at all and which headers it may see: httpx and aiohttp only
drop ``Authorization`` on cross-origin redirects, and a URL in a payload must never make the bot
fetch from anywhere but the platform's own file hosts (a loopback URL once fetched difybot's own
``/metrics`` and uploaded it to Dify). Hosts the operator configured (an API base, Dify) are
taken at their addresses; any other host must resolve to public addresses only: ``PublicOnly``
drops loopback, private, link-local, multicast and reserved addresses from every DNS answer
before aiohttp connects, so a name pointing at 127.0.0.1 is refused, and rebinding the name
between a check and the connect gains nothing (the check is the connect's own lookup). With an
HTTP(S) proxy in the environment, the proxy connects, and its own rules apply.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from httpx_aiohttp import AiohttpTransport

from bot.errors import FileRefused, FileTooLarge, FileUnavailable
from bot.models import Attachment

log = logging.getLogger(__name__)

MAX_HOPS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class Download:
    """One file being received: ``size`` when the source said it, ``chunks`` to read once."""

    filename: str
    mime_type: str
    size: int | None
    chunks: AsyncIterator[bytes]


class FileSource(Protocol):
    """Where one platform's attachments come from (Slack files, WeChat media, ...).

    ``describe`` completes what the platform left out (a Slack Connect stub's name and type)
    before the file is judged; ``open`` streams it."""

    async def describe(self, attachment: Attachment) -> Attachment: ...

    def open(
        self, attachment: Attachment, *, limit: int
    ) -> AbstractAsyncContextManager[Download]: ...


async def capped(chunks: AsyncIterator[bytes], limit: int, *, name: str) -> AsyncIterator[bytes]:
    """``chunks`` unchanged until more than ``limit`` bytes came: then FileTooLarge."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise FileTooLarge(f"{name}: more than {limit} bytes", name=name, limit=limit)
        yield chunk


async def read_all(download: Download, limit: int) -> bytes:
    """The whole (small) file: voice notes for speech-to-text, answer files for re-posting."""
    parts = [chunk async for chunk in capped(download.chunks, limit, name=download.filename)]
    return b"".join(parts)


def check_size(size: int | None, limit: int, *, name: str) -> None:
    """Refuse before the first byte when the announced size is already too much."""
    if size is not None and size > limit:
        raise FileTooLarge(f"{name}: {size} bytes > {limit}", name=name, limit=limit)


@dataclass(frozen=True, slots=True)
class Hop:
    """A URL that may be fetched: the ``headers`` to send it, and whether its host is one the
    operator ``configured`` (taken at any address) rather than one a payload named (public
    addresses only)."""

    headers: dict[str, str] = field(default_factory=dict)
    configured: bool = False


# Decides, for one hop's URL, whether and how it is fetched; None: never.
HostPolicy = Callable[[httpx.URL], Hop | None]


def is_public(address: str) -> bool:
    """An address on the public internet: not loopback, private, link-local, multicast,
    reserved, unspecified or shared (CGNAT); IPv4-mapped IPv6 judged by its IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local or ip.is_private
    )


class NotPublic(OSError):
    """A host that resolves to no public address (or is a non-public address itself)."""


class PublicOnly(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses (see the module docstring)."""

    def __init__(self, resolver: AbstractResolver | None = None) -> None:
        self._resolver = resolver or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        public = [entry for entry in found if is_public(entry["host"])]
        if not public:
            raise NotPublic(f"{host} resolves to no public address")
        return public

    async def close(self) -> None:
        await self._resolver.close()


def build_download_http(*, timeout: float = 30.0) -> httpx.AsyncClient:
    """The client for configured hosts (platform API bases, Dify's file URLs): explicit
    timeouts, no redirects followed behind our back (``GuardedFetch`` decides each hop)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout, connect=5.0), follow_redirects=False, trust_env=True
    )


def build_public_http(
    *, timeout: float = 30.0, resolver: AbstractResolver | None = None
) -> httpx.AsyncClient:
    """The client for hosts a payload named: like ``build_download_http``, but it connects only
    to public addresses (``PublicOnly``; the aiohttp session is made on first use, in the
    running loop)."""

    def session() -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(resolver=PublicOnly(resolver), limit=100)
        return aiohttp.ClientSession(connector=connector)

    return httpx.AsyncClient(
        transport=AiohttpTransport(client=session),
        timeout=httpx.Timeout(timeout, connect=5.0),
        follow_redirects=False,
        trust_env=True,
    )


class GuardedFetch:
    """GETs a URL hop by hop: ``http`` for configured hosts, ``public`` for the others."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        public: httpx.AsyncClient | None = None,
        *,
        max_hops: int = MAX_HOPS,
    ) -> None:
        self._http = http
        self._public = public if public is not None else build_public_http()
        self._max_hops = max_hops

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._public.aclose()

    @asynccontextmanager
    async def open(
        self, url: str, *, policy: HostPolicy, limit: int, name: str
    ) -> AsyncIterator[httpx.Response]:
        """The final response, status 2xx, its Content-Length checked; its body unread.
        FileRefused when a hop leads where the policy (or the address rule) does not go."""
        target = httpx.URL(url)
        for _ in range(self._max_hops + 1):
            response = await self._send(target, policy(target), name=name)
            try:
                if response.status_code in _REDIRECTS and "location" in response.headers:
                    target = target.join(response.headers["location"])
                    continue
                if not response.is_success:
                    raise FileUnavailable(f"{name}: HTTP {response.status_code}", name=name)
                check_size(_length(response), limit, name=name)
                yield response
                return
            finally:
                await response.aclose()
        raise FileUnavailable(f"{name}: more than {self._max_hops} redirects", name=name)

    async def _send(self, target: httpx.URL, hop: Hop | None, *, name: str) -> httpx.Response:
        if hop is None:
            raise FileRefused(f"{name}: {target.host} is not a host we fetch from", name=name)
        if not hop.configured and _is_address(target.host) and not is_public(target.host):
            raise FileRefused(f"{name}: {target.host} is not a public address", name=name)
        http = self._http if hop.configured else self._public
        request = http.build_request("GET", target, headers=hop.headers)
        try:
            return await http.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            if _caused_by(exc, NotPublic):
                raise FileRefused(
                    f"{name}: {target.host} has no public address", name=name
                ) from exc
            raise FileUnavailable(f"{name}: {type(exc).__name__}", name=name) from exc


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind) or isinstance(getattr(seen, "os_error", None), kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def body_of(response: httpx.Response, limit: int, *, name: str) -> AsyncIterator[bytes]:
    """The response body as capped chunks (httpx errors become FileUnavailable)."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise FileUnavailable(f"{name}: {type(exc).__name__}", name=name) from exc

    return capped(chunks(), limit, name=name)


def content_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";")[0].strip().lower()


def _length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() else None
