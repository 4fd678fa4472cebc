"""Dify file types, an app's file rules from /parameters, and answer-file Markdown, table-driven."""

from __future__ import annotations

from typing import Any

import pytest

from bot.files.answers import AnswerFiles, LinkedFile, Mention, mentions, without
from bot.files.downloads import GuardedFetch, build_download_http
from bot.files.types import MB, FileRules, file_type, speech_mime_type
from bot.models import Answer, FileOut
from tests.fakes.dify_wire import load_json


@pytest.mark.parametrize(
    ("mime", "name", "kind"),
    [
        ("application/pdf", "Report.PDF", "document"),
        ("image/png", "shot.png", "image"),
        ("", "photo.JPEG", "image"),
        ("audio/webm", "clip.webm", "audio"),  # a Slack audio clip, not a video
        ("video/webm", "screen.webm", "video"),
        ("text/plain", "notes", "document"),
        ("application/zip", "a.zip", "custom"),
        ("application/octet-stream", "data.csv", "document"),
    ],
)
def test_file_type(mime: str, name: str, kind: str) -> None:
    assert file_type(mime, name) == kind


def test_rules_from_the_captured_parameters() -> None:
    rules = FileRules.from_parameters(load_json("parameters"))
    assert rules.enabled and rules.types == {"document", "image"} and rules.number_limit == 3
    assert rules.type_for("document", "a.pdf") == "document"
    assert rules.type_for("custom", "a.zip") is None
    assert rules.limit_bytes("image") == 10 * MB and rules.limit_bytes("document") == 15 * MB
    assert rules.allowed_label() == "document, image"


CUSTOM_ZIP = {
    "enabled": True,
    "allowed_file_types": ["custom"],
    "allowed_file_extensions": [".ZIP"],
}
LEGACY_IMAGES = {"image": {"enabled": True, "number_limits": 2, "transfer_methods": ["local_file"]}}
REMOTE_ONLY = {"enabled": True, "allowed_file_upload_methods": ["remote_url"]}


@pytest.mark.parametrize(
    ("file_upload", "kind", "name", "expected"),
    [
        ({"enabled": False}, "image", "a.png", None),
        (CUSTOM_ZIP, "custom", "a.zip", "custom"),
        (CUSTOM_ZIP, "document", "b.zip", "custom"),
        (REMOTE_ONLY, "image", "a.png", None),
        (LEGACY_IMAGES, "image", "a.png", "image"),
        (LEGACY_IMAGES, "document", "a.pdf", None),
    ],
)
def test_rules_decide_the_type_to_send(
    file_upload: dict[str, Any], kind: str, name: str, expected: str | None
) -> None:
    assert FileRules.from_parameters({"file_upload": file_upload}).type_for(kind, name) == expected


@pytest.mark.parametrize(
    ("mime", "name", "speech"),
    [("audio/mpeg", "a.mp3", "audio/mp3"), ("audio/mp4", "a.m4a", "audio/m4a"),
     ("application/octet-stream", "v.amr", "audio/amr"), ("audio/webm", "c.webm", "audio/webm")],
)  # fmt: skip
def test_speech_mime_types_are_the_ones_dify_takes(mime: str, name: str, speech: str) -> None:
    assert speech_mime_type(mime, name) == speech


async def test_answer_files_are_found_once_and_only_on_dify() -> None:
    fetch = GuardedFetch(build_download_http())
    files = AnswerFiles(fetch, base="http://dify.test/v1", origins=["https://files.dify.test"])
    text = (
        "Chart: ![c.png](http://dify.test/files/1/file-preview?sign=a) and "
        "[report.pdf](https://files.dify.test/files/2/file-preview?sign=b), "
        "[elsewhere](https://evil.test/files/3/file-preview), [home](http://dify.test/apps)"
    )
    answer = Answer(files=(FileOut(url="http://dify.test/files/1/file-preview?sign=z",
                                   filename="c.png", mime_type="image/png"),))  # fmt: skip
    found = files.find(text, answer)
    assert [(f.filename, f.mime_type, len(f.mentions)) for f in found] == [
        ("c.png", "image/png", 1),
        ("report.pdf", "", 1),
    ]
    assert without(text, found).startswith("Chart:  and report.pdf, [elsewhere]")
    await fetch.aclose()


def test_mentions_come_from_the_markdown_parser() -> None:
    text = "`![not](code)` ![a](/files/tools/x.png?sign=1) [**b**](u)"
    assert mentions(text) == [
        Mention(True, "a", "/files/tools/x.png?sign=1"),
        Mention(False, "b", "u"),
    ]
    linked = LinkedFile("u", "b", mentions=[Mention(False, "b", "u")])
    assert without("see [b](u)", [linked]) == "see b"
