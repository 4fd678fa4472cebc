"""What DingTalk sends the bot, built and signed as DingTalk does, for tests to post to difybot's
``POST /dingtalk`` (HTTP mode) or push over the fake Stream gateway.

Robot callbacks (both modes carry the same JSON; docs "接收消息"): ``msgtype`` text / picture /
richText / file / audio / video, ``conversationType`` "1" single chat, "2" group (where only
messages that @ the robot arrive, its name cut out of the text, leaving the leading space), a
``sessionWebhook`` on the oapi origin valid ``sessionWebhookExpiredTime`` (ms).

HTTP mode signs with headers ``timestamp`` (ms) and ``sign`` = base64(HMAC-SHA256(key = app
secret, message = timestamp + "\\n" + app secret)); a receiver refuses a timestamp more than an
hour off. A duplicate (a retry after a timeout, a replica's second look) carries the same body
and ``msgId`` with a fresh timestamp: call ``webhook_request`` again with the same payload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.dingtalk import FakeDingTalk
    from tests.fakes.dingtalk_cards import Card

BOT_DINGTALK_ID = "$:LWCP_v1:$botBOTbotBOTbotBOT0123456789=="


@dataclass(frozen=True)
class Member:
    """A person in the organisation, as callbacks name them."""

    staff_id: str
    nick: str

    @property
    def dingtalk_id(self) -> str:  # DingTalk's encrypted id for the same person
        digest = hashlib.sha256(self.staff_id.encode()).digest()[:18]
        return "$:LWCP_v1:$" + base64.b64encode(digest).decode()


ALICE = Member("manager4821", "王小明")
BOB = Member("staff0917", "李雷")


def sign(secret: str, timestamp_ms: int | str) -> str:
    message = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def webhook_request(
    fake: FakeDingTalk, payload: dict[str, Any], *, timestamp_ms: int | None = None,
    secret: str | None = None,
) -> tuple[dict[str, str], bytes]:  # fmt: skip
    """Headers and body of the POST DingTalk makes to the robot's HTTP callback URL."""
    stamp = int(fake.clock() * 1000) if timestamp_ms is None else timestamp_ms
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "timestamp": str(stamp),
        "sign": sign(fake.client_secret if secret is None else secret, stamp),
    }
    return headers, json.dumps(payload, ensure_ascii=False).encode()


def robot_message(
    fake: FakeDingTalk,
    text: str = "你好",
    *,
    sender: Member = ALICE,
    group: str | None = None,
    title: str = "产品讨论群",
    msgtype: str = "text",
    content: dict[str, Any] | None = None,
    others_at: tuple[Member, ...] = (),
    msg_id: str | None = None,
    session_lifetime: float | None = None,
) -> dict[str, Any]:
    """One robot callback from ``sender``: a single chat, or a group message that @s the robot
    when ``group`` (an openConversationId) is given. Opens its session webhook on the fake."""
    now_ms = int(fake.clock() * 1000)
    conversation = group or "cid" + base64.b64encode(sender.staff_id.encode()).decode()
    space = f"IM_GROUP.{group}" if group else f"IM_ROBOT.{sender.staff_id}"
    lifetime = {} if session_lifetime is None else {"lifetime": session_lifetime}
    session = fake.sessions.open(space, conversation, **lifetime)
    payload: dict[str, Any] = {
        "conversationId": conversation,
        "chatbotCorpId": fake.corp_id,
        "chatbotUserId": BOT_DINGTALK_ID,
        "msgId": msg_id or f"msg{uuid.uuid4().hex[:22]}==",
        "senderNick": sender.nick,
        "isAdmin": False,
        "senderStaffId": sender.staff_id,
        "sessionWebhookExpiredTime": int(session.expires_at * 1000),
        "createAt": now_ms,
        "senderCorpId": fake.corp_id,
        "conversationType": "2" if group else "1",
        "senderId": sender.dingtalk_id,
        "sessionWebhook": fake.sessions.url(session),
        "robotCode": fake.client_id,
        "msgtype": msgtype,
    }
    if group:
        at = [{"dingtalkId": BOT_DINGTALK_ID}]
        at += [{"dingtalkId": m.dingtalk_id, "staffId": m.staff_id} for m in others_at]
        payload |= {"conversationTitle": title, "isInAtList": True, "atUsers": at}
    if msgtype == "text":
        payload["text"] = {"content": f" {text}" if group else text}
    else:
        payload["content"] = content or {}
    return payload


def picture(fake: FakeDingTalk, data: bytes, **kwargs: Any) -> dict[str, Any]:
    code = fake.robot.add_file(data, content_type="image/png")
    content = {"downloadCode": code, "pictureDownloadCode": code}
    return robot_message(fake, msgtype="picture", content=content, **kwargs)


def file_message(
    fake: FakeDingTalk, data: bytes, file_name: str, content_type: str, **kwargs: Any
) -> dict[str, Any]:
    code = fake.robot.add_file(data, content_type=content_type, file_name=file_name)
    content = {"downloadCode": code, "fileName": file_name, "spaceId": "21810", "fileId": "189"}
    return robot_message(fake, msgtype="file", content=content, **kwargs)


def card_action(
    fake: FakeDingTalk, card: Card, *, user: Member = ALICE, action: str,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A click on a card button (topic ``/v1.0/card/instances/callback``): ``content`` and
    ``extension`` are JSON strings, as dingtalk-stream's ``CardCallbackMessage`` expects."""
    space_type, _, space_id = (card.spaces[0] if card.spaces else "IM_ROBOT.").partition(".")
    private = {"actionIds": [action], "params": params or {}}
    return {
        "extension": "{}",
        "corpId": fake.corp_id,
        "type": "actionCallback",
        "userId": user.staff_id,
        "userIdType": 1,
        "spaceType": space_type,
        "spaceId": space_id,
        "outTrackId": card.out_track_id,
        "content": json.dumps({"cardPrivateData": private}, ensure_ascii=False),
    }
