"""FakeSlack's files: ``files.info``, private downloads, ``files_upload_v2``, and a foreign host.

Downloads behave like ``url_private_download`` (slack.md §5): the bytes with their real type
for the bot token, Slack's 200 HTML login page for anything else. ``moved`` files answer with a
redirect on Slack's own host, ``elsewhere`` ones with a redirect to ``ForeignHost`` (another
loopback address, 127.0.0.2), which records the headers it gets so tests can prove the token
never went there.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

LOGIN_PAGE = "<!DOCTYPE html><html><body>Sign in to Slack</body></html>"


@dataclass
class SlackFile:
    id: str
    name: str
    mimetype: str
    data: bytes
    redirect: str = ""  # "" | "moved" (same host) | "elsewhere" (the foreign host)
    subtype: str = ""


@dataclass
class Download:
    path: str
    authorization: str


@dataclass
class Upload:
    file_id: str
    filename: str
    data: bytes = b""


@dataclass
class SlackFiles:
    """Files the fake Slack holds, and the uploads it received."""

    bot_token: str
    origin: Callable[[], str]
    foreign: ForeignHost | None = None
    files: dict[str, SlackFile] = field(default_factory=dict)
    downloads: list[Download] = field(default_factory=list)
    uploads: dict[str, Upload] = field(default_factory=dict)
    shared: list[dict[str, Any]] = field(default_factory=list)  # completeUploadExternal calls
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{team}-{file_id}/{name}", self._download)
        app.router.add_post("/upload/v1/{file_id}", self._upload)

    def add(
        self, name: str, mimetype: str, data: bytes, *, redirect: str = "", subtype: str = ""
    ) -> SlackFile:
        file = SlackFile(f"F{next(self._ids):04d}", name, mimetype, data, redirect, subtype)
        self.files[file.id] = file
        return file

    def payload(self, file: SlackFile, *, stub: bool = False) -> dict[str, Any]:
        """The ``files[]`` item of a message event (a Slack Connect stub with ``stub``)."""
        if stub:
            return {"id": file.id, "mode": "file_access", "file_access": "check_file_info"}
        url = f"{self.origin()}/files-pri/T0001-{file.id}/{file.name}"
        item = {"id": file.id, "name": file.name, "title": file.name, "mimetype": file.mimetype,
                "filetype": file.name.rsplit(".", 1)[-1], "size": len(file.data),
                "url_private": url, "url_private_download": url + "?download=1",
                "mode": "hosted"}  # fmt: skip
        if file.subtype:
            item["subtype"] = file.subtype
        return item

    def handle(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "files.info":
            file = self.files.get(str(args.get("file")))
            return {"file": self.payload(file)} if file else {"error": "file_not_found"}
        if method == "files.getUploadURLExternal":
            file_id = f"FUP{next(self._ids):04d}"
            self.uploads[file_id] = Upload(file_id, str(args.get("filename")))
            return {"upload_url": f"{self.origin()}/upload/v1/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = json.loads(args["files"]) if isinstance(args.get("files"), str) else []
            self.shared.append({**args, "files": files})
            return {"files": [{"id": f["id"], "title": f.get("title")} for f in files]}
        return {"error": "unknown_method"}

    async def _download(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        self.downloads.append(Download(request.path, auth))
        file = self.files.get(request.match_info["file_id"])
        if file is None:
            return web.Response(status=404)
        if auth != f"Bearer {self.bot_token}":
            return web.Response(text=LOGIN_PAGE, content_type="text/html")
        if file.redirect == "moved" and "moved" not in request.query:
            raise web.HTTPFound(f"{request.path}?moved=1")
        if file.redirect == "elsewhere" and self.foreign is not None:
            self.foreign.files[file.id] = file.data
            raise web.HTTPFound(f"{self.foreign.origin}/cdn/{file.id}")
        return web.Response(body=file.data, content_type=file.mimetype)

    async def _upload(self, request: web.Request) -> web.Response:
        upload = self.uploads.get(request.match_info["file_id"])
        if upload is None:
            return web.Response(status=404)
        upload.data = await request.read()
        return web.Response(text=f"OK - {len(upload.data)}")


@dataclass
class ForeignHost:
    """A server that is not Slack, on 127.0.0.2: serves what it is given, records headers."""

    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)
    origin: str = ""
    _runner: web.AppRunner | None = None

    async def __aenter__(self) -> ForeignHost:
        app = web.Application()
        app.router.add_get("/cdn/{file_id}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.2", 0).start()
        self.origin = f"http://127.0.0.2:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        data = self.files.get(request.match_info["file_id"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")
