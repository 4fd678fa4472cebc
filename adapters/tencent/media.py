"""WeChat and WeCom files in: pushed images through the media API, AI bot files by their URL.

Official Account and WeCom app pushes carry a ``MediaId`` (temporary media, kept 3 days), read
with ``/cgi-bin/media/get``; an OA image also has a ``PicUrl`` that needs no token, used when no
app secret is configured. The WeCom AI bot (callback mode) sends image and file URLs, valid 5
minutes, whose bytes are AES-256-CBC encrypted with the bot's EncodingAESKey (IV = key[:16],
PKCS#7 padding to 32 bytes; wechat.md §8.1). Its files come without a name, so ``describe``
fetches them at once and names them from their first bytes.

A URL in a push is fetched only from Tencent's file hosts: picture URLs from ``*.qpic.cn``
(``mmbiz.qpic.cn``, ``wework.qpic.cn``), AI bot media from Tencent Cloud object storage
(``ww-aibot-img-<n>.cos.<region>.myqcloud.com``, HTTPS) or ``*.qpic.cn``, each resolving to public
addresses only (on Tencent Cloud's own network ``*.myqcloud.com`` may resolve to a 169.254
address: use public DNS for it), and from the configured API base. No other host, whatever the
push says.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.tencent.api import PlatformAPI
from adapters.tencent.crypto import BLOCK, to_aes_key
from bot.errors import FileUnavailable
from bot.files.downloads import (
    Download,
    GuardedFetch,
    Hop,
    HostPolicy,
    body_of,
    check_size,
    content_type,
    read_all,
)
from bot.files.types import MB
from bot.models import Attachment

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"GIF8", "image/gif", ".gif"),
    (b"%PDF-", "application/pdf", ".pdf"),
    (b"#!AMR", "audio/amr", ".amr"),
)


PICTURE_HOSTS = (".qpic.cn",)
BOT_MEDIA_HOSTS = (".myqcloud.com", ".qpic.cn")


def tencent_files(
    *suffixes: str, api_base: str = "", schemes: tuple[str, ...] = ("https",)
) -> HostPolicy:
    """Tencent's file hosts ending in ``suffixes`` (public addresses only), and the configured
    ``api_base`` origin; no credentials either way."""
    api = httpx.URL(api_base) if api_base else None

    def policy(url: httpx.URL) -> Hop | None:
        if api is not None and (url.scheme, url.host, url.port) == (api.scheme, api.host, api.port):
            return Hop(configured=True)
        if url.scheme in schemes and url.host.lower().endswith(suffixes):
            return Hop()
        return None

    return policy


class MediaFiles:
    """The ``FileSource`` of Official Account and WeCom app pushes."""

    def __init__(self, api: PlatformAPI | None, fetch: GuardedFetch, *, api_base: str = "") -> None:
        self._api = api
        self._fetch = fetch
        # PicUrl: mmbiz.qpic.cn serves over plain HTTP too (wechat.md §1.3).
        self._pictures = tencent_files(*PICTURE_HOSTS, api_base=api_base, schemes=("http", "https"))

    async def describe(self, attachment: Attachment) -> Attachment:
        return attachment

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        name = attachment.name
        if attachment.platform_id and self._api is not None:
            async with self._api.open_media(attachment.platform_id, limit=limit, name=name) as got:
                if attachment.voice:
                    yield await _voice(got, attachment, limit)
                else:
                    yield got
            return
        if not attachment.url:
            raise FileUnavailable(f"{name}: no media id and no URL", name=name)
        async with self._fetch.open(
            attachment.url, policy=self._pictures, limit=limit, name=name
        ) as response:
            served = content_type(response) or attachment.mime_type
            yield Download(name, served, None, body_of(response, limit, name=name))


async def _voice(download: Download, attachment: Attachment, limit: int) -> Download:
    """A recording as Dify's speech-to-text takes it, named by its bytes first: WeChat's
    ``Format`` may say ``speex`` while ``media/get`` serves AMR (wechat.md §6.1), and Dify takes
    AMR as it is. Real Speex has no decoder in Python's standard library and ffmpeg is not in
    our image, so it is refused here rather than sent for a guaranteed 415."""
    data = await read_all(download, limit)
    if data.startswith(b"#!AMR"):
        mime = "audio/amr"
    elif attachment.mime_type in ("audio/speex", "audio/x-speex"):
        name = attachment.name
        raise FileUnavailable(f"{name}: Speex cannot be transcribed without a decoder", name=name)
    else:
        mime = attachment.mime_type
    stem = attachment.name.rsplit(".", 1)[0]
    return Download(f"{stem}.{mime.split('/')[-1]}", mime, len(data), _once(data))


class BotMediaFiles:
    """The ``FileSource`` of the WeCom AI bot: fetch, decrypt, name by content."""

    def __init__(
        self,
        fetch: GuardedFetch,
        encoding_aes_key: str,
        *,
        limit: int = 20 * MB,
        api_base: str = "",
    ) -> None:
        self._fetch = fetch
        self._policy = tencent_files(*BOT_MEDIA_HOSTS, api_base=api_base)
        self._key = to_aes_key(encoding_aes_key)
        self._limit = limit
        # Files fetched by ``describe``, waiting for ``open`` (bounded: a refused file's bytes
        # are never asked for).
        self._held: OrderedDict[str, bytes] = OrderedDict()

    async def describe(self, attachment: Attachment) -> Attachment:
        if not attachment.url or attachment.mime_type != "application/octet-stream":
            return attachment
        data = await self._get(attachment, self._limit)
        self._held[attachment.url] = data
        while len(self._held) > 16:
            self._held.popitem(last=False)
        mime, ext = sniff(data)
        name = attachment.name if "." in attachment.name else attachment.name + ext
        return replace(attachment, name=name, mime_type=mime, size=len(data))

    @asynccontextmanager
    async def open(self, attachment: Attachment, *, limit: int) -> AsyncIterator[Download]:
        data = self._held.pop(attachment.url or "", None)
        if data is None:
            data = await self._get(attachment, limit)
        check_size(len(data), limit, name=attachment.name)
        yield Download(attachment.name, attachment.mime_type, len(data), _once(data))

    async def _get(self, attachment: Attachment, limit: int) -> bytes:
        name, url = attachment.name, attachment.url or ""
        # The ciphertext is at most one padding block longer than the file.
        async with self._fetch.open(
            url, policy=self._policy, limit=limit + BLOCK, name=name
        ) as response:
            encrypted = b"".join([c async for c in body_of(response, limit + BLOCK, name=name)])
        return decrypt_media(self._key, encrypted, name=name)


def decrypt_media(key: bytes, encrypted: bytes, *, name: str) -> bytes:
    if not encrypted or len(encrypted) % 16:
        raise FileUnavailable(f"{name}: not AES-CBC ciphertext", name=name)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    data = decryptor.update(encrypted) + decryptor.finalize()
    pad = data[-1]
    if not 1 <= pad <= BLOCK or data[-pad:] != bytes([pad]) * pad:
        raise FileUnavailable(f"{name}: bad padding after decryption", name=name)
    return data[:-pad]


def sniff(data: bytes) -> tuple[str, str]:
    """``(MIME type, extension)`` from a file's first bytes; unknown stays a generic file."""
    for magic, mime, ext in _MAGIC:
        if data.startswith(magic):
            return mime, ext
    return "application/octet-stream", ""


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data
