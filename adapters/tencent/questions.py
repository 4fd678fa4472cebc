"""What to ask Dify for a push: its words, or a voice message's transcript, or why there is none."""

from __future__ import annotations

import logging

from adapters.tencent.api import PlatformAPI
from adapters.tencent.errors import WeChatAPIError
from adapters.tencent.messages import TEXT_KINDS, Push
from bot.dify.client import DifyClient
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
    try:
        data, _ = await api.download("/cgi-bin/media/get", {"media_id": push.media_id})
        fmt = voice_format(data, push.voice_format)
        if fmt is None:
            log.warning("voice in %s cannot be transcribed without a decoder", push.voice_format)
            return "", "voice_failed"
        text = await dify.audio_to_text(
            data, filename=f"{push.media_id}.{fmt}", mime_type=f"audio/{fmt}", user=dify_user
        )
    except (WeChatAPIError, DifyError) as exc:
        log.warning("voice not transcribed: %s", exc)
        return "", "voice_failed"
    return (text, "") if text.strip() else ("", "voice_failed")


def voice_format(data: bytes, declared: str) -> str | None:
    """The format to name a recording for ``/audio-to-text``, by its bytes first: WeChat's
    ``Format`` may say ``speex`` while ``media/get`` serves AMR (wechat.md §6.1), and Dify takes
    AMR as it is. Real Speex has no decoder in Python's standard library and ffmpeg is not in
    our image, so it is reported (None) rather than sent for a guaranteed 415."""
    if data.startswith(b"#!AMR"):
        return "amr"
    if declared in ("", "amr", "speex"):
        return None if declared == "speex" else "amr"
    return declared
