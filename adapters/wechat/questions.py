"""What to ask Dify for a push: its words, or a voice message's transcript, or why there is none."""

from __future__ import annotations

import logging

from adapters.wechat.api import PlatformAPI
from adapters.wechat.errors import WeChatAPIError
from adapters.wechat.messages import TEXT_KINDS, Push
from bot.dify import DifyClient
from bot.errors import DifyError

log = logging.getLogger(__name__)


async def to_question(
    push: Push, *, api: PlatformAPI | None, dify: DifyClient, dify_user: str
) -> tuple[str, str]:
    """``(text, "")`` to ask, or ``("", key)`` with the text key of the notice to send instead."""
    if push.kind in TEXT_KINDS or (push.kind == "voice" and push.text):
        return push.text, ""
    if push.kind == "image":
        return push.text, ""  # the attachments pipeline uploads it; the text may be empty
    if push.kind == "voice" and push.media_id and api is not None:
        return await transcribe(push, api=api, dify=dify, dify_user=dify_user)
    return "", "voice_failed" if push.kind == "voice" else "wechat_unsupported"


async def transcribe(
    push: Push, *, api: PlatformAPI, dify: DifyClient, dify_user: str
) -> tuple[str, str]:
    """Voice without ``Recognition``: the AMR from the media API through Dify's speech-to-text."""
    fmt = push.voice_format or "amr"
    try:
        data, _ = await api.download("/cgi-bin/media/get", {"media_id": push.media_id})
        text = await dify.audio_to_text(
            data, filename=f"{push.media_id}.{fmt}", mime_type=f"audio/{fmt}", user=dify_user
        )
    except (WeChatAPIError, DifyError) as exc:
        log.warning("voice not transcribed: %s", exc)
        return "", "voice_failed"
    return (text, "") if text.strip() else ("", "voice_failed")
