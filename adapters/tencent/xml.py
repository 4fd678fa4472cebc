"""WeChat's XML bodies: parsed with defusedxml into flat dicts, replies rendered with safe CDATA.

WeChat and WeCom never send a DTD, so any DTD (the carrier of entity bombs and external
entities) is refused before expansion; malformed XML is a 400, never a crash.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from bot.errors import CallbackRejected

MAX_BODY = 256 * 1024  # a push is a few KB; encrypted ones ~3x their plaintext
# Characters XML 1.0 cannot carry at all (CDATA does not help): C0 controls except \t \n \r.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def parse_xml(body: bytes) -> dict[str, str]:
    """Top-level ``<xml>`` children as ``{tag: text}``; nested elements as ``Parent.Child``."""
    try:
        root = SafeET.fromstring(body, forbid_dtd=True)
    except (DefusedXmlException, ET.ParseError, ValueError) as exc:
        raise CallbackRejected(f"unreadable XML ({type(exc).__name__})", status=400) from None
    fields: dict[str, str] = {}
    for child in root:
        fields[child.tag] = (child.text or "").strip() if len(child) == 0 else ""
        for grandchild in child:
            fields[f"{child.tag}.{grandchild.tag}"] = (grandchild.text or "").strip()
    return fields


def cdata(text: str) -> str:
    """``text`` as CDATA: ``]]>`` split across two sections, illegal characters removed."""
    clean = _ILLEGAL.sub("", text).replace("]]>", "]]]]><![CDATA[>")
    return f"<![CDATA[{clean}]]>"


def render_xml(fields: dict[str, str | int]) -> bytes:
    """``<xml>`` with one element per field: strings as CDATA, integers bare."""
    parts = ["<xml>"]
    for tag, value in fields.items():
        body = str(value) if isinstance(value, int) else cdata(value)
        parts.append(f"<{tag}>{body}</{tag}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def text_reply(*, to_user: str, from_user: str, content: str, create_time: int) -> bytes:
    """A passive text reply (ToUser/FromUser swapped relative to the push)."""
    return render_xml(
        {
            "ToUserName": to_user,
            "FromUserName": from_user,
            "CreateTime": create_time,
            "MsgType": "text",
            "Content": content,
        }
    )


def encrypted_reply(*, encrypt: str, signature: str, timestamp: str, nonce: str) -> bytes:
    """The safe-mode reply envelope around an encrypted reply."""
    return render_xml(
        {"Encrypt": encrypt, "MsgSignature": signature, "TimeStamp": timestamp, "Nonce": nonce}
    )
