"""The robot's OpenAPI on the fake DingTalk: sends to single chats (``oToMessages/batchSend``) and
groups (``groupMessages/send``) with a ``msgKey`` and a JSON-string ``msgParam``; files users sent
(``messageFiles/download`` → a temporary link on the files origin); and ``/media/upload`` on the
oapi origin, whose ``media_id`` a ``sampleFile`` / ``sampleAudio`` message refers to.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tests.fakes.dingtalk_wire import DingTalkCall, json_response, oapi_error, openapi_error

if TYPE_CHECKING:
    from tests.fakes.dingtalk import FakeDingTalk

# msgKey → the msgParam fields DingTalk requires ("机器人发送消息的类型").
MSG_KEYS: dict[str, tuple[str, ...]] = {
    "sampleText": ("content",),
    "sampleMarkdown": ("title", "text"),
    "sampleImageMsg": ("photoURL",),
    "sampleLink": ("text", "title", "picUrl", "messageUrl"),
    "sampleActionCard": ("title", "text", "singleTitle", "singleURL"),
    "sampleActionCard2": ("title", "text", "actionTitle1", "actionURL1"),
    "sampleActionCard3": ("title", "text", "actionTitle1", "actionURL1"),
    "sampleActionCard4": ("title", "text", "actionTitle1", "actionURL1"),
    "sampleActionCard5": ("title", "text", "actionTitle1", "actionURL1"),
    "sampleActionCard6": ("title", "text", "buttonTitle1", "buttonUrl1"),
    "sampleAudio": ("mediaId", "duration"),
    "sampleFile": ("mediaId", "fileName", "fileType"),
    "sampleVideo": ("duration", "videoMediaId", "videoType"),
}
MAX_USERS_PER_SEND = 20
MEDIA_LIMITS = {"image": 20 << 20, "voice": 2 << 20, "video": 20 << 20, "file": 20 << 20}


@dataclass
class StoredFile:
    data: bytes
    content_type: str
    file_name: str


class RobotOpenAPI:
    def __init__(self, fake: FakeDingTalk) -> None:
        self.fake = fake
        self.users: set[str] | None = None  # staff ids that exist (None: any)
        self.groups: set[str] | None = None  # openConversationIds the robot is in (None: any)
        self.posted: list[dict[str, Any]] = []  # what reached a chat through the OpenAPI
        self.files: dict[str, StoredFile] = {}  # by downloadCode
        self.uploaded: dict[str, StoredFile] = {}  # by media_id
        self.downloaded: dict[str, int] = {}  # bytes the files origin wrote, by downloadCode
        self.link_lifetime = 3600.0
        self._links: dict[str, tuple[str, float]] = {}  # link key → (downloadCode, expiry)

    def add_file(self, data: bytes, *, content_type: str = "image/png", file_name: str = "") -> str:
        """A file a user sent; returns its ``downloadCode``."""
        code = f"mIof{uuid.uuid4().hex}{hashlib.sha1(data).hexdigest()[:12]}"
        self.files[code] = StoredFile(data, content_type, file_name)
        return code

    # ---- sends ------------------------------------------------------------------------------

    async def batch_send(self, call: DingTalkCall, request: web.Request) -> web.Response:
        body, error = self._message(call)
        if error is not None:
            return error
        users = body.get("userIds")
        if not isinstance(users, list) or not users or len(users) > MAX_USERS_PER_SEND:
            return openapi_error(400, "param.userIds.invalid", "userIds 为 1~20 个员工 ID")
        invalid = [u for u in users if self.users is not None and u not in self.users]
        for user in users:
            if user not in invalid:
                self._post(f"IM_ROBOT.{user}", body)
        answer = {"processQueryKey": _query_key(), "invalidStaffIdList": invalid}
        return json_response(answer | {"flowControlledStaffIdList": [], "filteredStaffIdList": []})

    async def group_send(self, call: DingTalkCall, request: web.Request) -> web.Response:
        body, error = self._message(call)
        if error is not None:
            return error
        group = str(body.get("openConversationId") or "")
        if not group or (self.groups is not None and group not in self.groups):
            return openapi_error(400, "resource.not.found", "群会话不存在或机器人不在群内")
        self._post(f"IM_GROUP.{group}", body)
        return json_response({"processQueryKey": _query_key()})

    def _message(self, call: DingTalkCall) -> tuple[dict[str, Any], web.Response | None]:
        body = call.json if isinstance(call.json, dict) else {}
        if body.get("robotCode") != self.fake.client_id:
            return body, openapi_error(400, "param.robotCode.invalid", "robotCode 不正确")
        required = MSG_KEYS.get(str(body.get("msgKey")))
        if required is None:
            return body, openapi_error(400, "param.msgKey.invalid", "不支持的 msgKey")
        raw = body.get("msgParam")
        try:  # msgParam is a JSON *string*, not an object
            param = json.loads(raw) if isinstance(raw, str) else None
        except ValueError:
            param = None
        if not isinstance(param, dict) or any(name not in param for name in required):
            return body, openapi_error(400, "param.msgParam.invalid", f"msgParam 需要 {required}")
        body["_param"] = param
        return body, None

    def _post(self, space: str, body: dict[str, Any]) -> None:
        param = body["_param"]
        text = param.get("content") if body["msgKey"] == "sampleText" else param.get("text", "")
        message = {"space": space, "via": "openapi", "at": self.fake.next_id()}
        self.posted.append(message | {"msgKey": body["msgKey"], "param": param, "text": text or ""})

    # ---- files ------------------------------------------------------------------------------

    async def file_url(self, call: DingTalkCall, request: web.Request) -> web.Response:
        body = call.json if isinstance(call.json, dict) else {}
        if body.get("robotCode") != self.fake.client_id:
            return openapi_error(400, "param.robotCode.invalid", "robotCode 不正确")
        code = str(body.get("downloadCode") or "")
        if code not in self.files:
            return openapi_error(400, "param.downloadCode.invalid", "downloadCode 无效或已过期")
        key = uuid.uuid4().hex
        expires = self.fake.clock() + self.link_lifetime
        self._links[key] = (code, expires)
        url = f"{self.fake.files_url}/file/{key}?Expires={int(expires)}&Signature={key[:16]}"
        return json_response({"downloadUrl": url})

    async def download(self, request: web.Request) -> web.StreamResponse:
        call = DingTalkCall("files", request.method, request.path, dict(request.query),
                            {k.lower(): v for k, v in request.headers.items()}, b"")  # fmt: skip
        self.fake.calls.append(call)
        code, expires = self._links.get(request.match_info["key"], ("", 0.0))
        if not code or expires < self.fake.clock():  # what the object store answers
            call.status = 403
            self.fake.notify()
            xml = "<Error><Code>AccessDenied</Code><Message>Request has expired.</Message></Error>"
            return web.Response(status=403, text=xml, content_type="application/xml")
        stored = self.files[code]
        response = web.StreamResponse(headers={"Content-Type": stored.content_type})
        response.content_length = len(stored.data)
        call.status = 200
        self.fake.notify()
        await response.prepare(request)
        self.downloaded[code] = 0
        try:
            for start in range(0, len(stored.data), 65536):
                chunk = stored.data[start : start + 65536]
                await response.write(chunk)
                self.downloaded[code] += len(chunk)
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up (an oversized file refused early)
        self.fake.notify()
        return response

    async def upload(self, call: DingTalkCall, request: web.Request) -> web.Response:
        if not self.fake.tokens.is_valid(call.query.get("access_token", "")):
            return oapi_error(40014, "不合法的access_token")
        kind = call.query.get("type", "")
        if kind not in MEDIA_LIMITS:
            return oapi_error(40004, "不合法的媒体文件类型")
        post = await request.post()
        part = post.get("media")
        if not isinstance(part, web.FileField):
            return oapi_error(41005, "缺少多媒体文件数据")
        data = part.file.read()
        if len(data) > MEDIA_LIMITS[kind]:
            return oapi_error(40006, "不合法的文件大小")
        media_id = f"@lA{uuid.uuid4().hex}"
        self.uploaded[media_id] = StoredFile(data, part.content_type, part.filename)
        return json_response({"errcode": 0, "errmsg": "ok", "media_id": media_id, "type": kind,
                              "created_at": int(self.fake.clock() * 1000)})  # fmt: skip


def _query_key() -> str:
    return uuid.uuid4().hex + "=="
