"""Attachments end to end on Slack: files in (upload-then-reference), answer files out."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.dify import Answer, UploadedFile
from tests.fakes.dify_state import signed_url
from tests.fakes.slack_bot import SlackBot, slack_bot
from tests.fakes.slack_files import ForeignHost
from tests.fakes.slack_payloads import dm, mention

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x01\x02pixels" * 50
TS = "1700000001.000001"
USER = "slack:T0001:U111"


def shared(text: str, files: list[dict[str, Any]], *, ts: str = TS) -> dict[str, Any]:
    """A DM with files, as Slack delivers it (``file_share``)."""
    return dm(text, ts=ts, subtype="file_share", files=files)


def parameters(bot: SlackBot, **file_upload: Any) -> None:
    params = copy.deepcopy(bot.dify.parameters)
    params["file_upload"].update(file_upload)
    bot.dify.parameters = params


async def notice(bot: SlackBot) -> str:
    """The one message the bot posted instead of asking Dify."""
    await bot.adapter.answers.drain()
    assert bot.dify.requests_to("/chat-messages") == []
    (message,) = bot.slack.messages.in_channel("D111")
    return message.body


async def test_a_pdf_and_text_reach_dify_byte_for_byte(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        pdf = bot.slack.files.add("report.pdf", "application/pdf", PDF)
        await bot.event(shared("summarize this", [bot.slack.files.payload(pdf)]))
        await bot.answered()
        ((file_id, upload),) = bot.dify.uploads.items()
        assert upload == UploadedFile("report.pdf", "application/pdf", PDF, USER)
        chat = bot.dify.requests_to("/chat-messages")[0].json
        assert chat["query"] == "summarize this" and chat["user"] == USER
        assert chat["files"] == [
            {"type": "document", "transfer_method": "local_file", "upload_file_id": file_id}
        ]
        (download,) = bot.slack.files.downloads
        assert download.authorization == "Bearer xoxb-test-token"
        # The upload streamed with an exact length: no chunked request for Dify's proxy.
        assert int(bot.dify.requests_to("/files/upload")[0].headers["content-length"]) > len(PDF)


async def test_a_file_alone_is_asked_about_with_the_default_query(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, files_default_query="What is in this image?") as bot:
        png = bot.slack.files.add("shot.png", "image/png", PNG)
        await bot.event(shared("", [bot.slack.files.payload(png)]))
        await bot.answered()
        chat = bot.dify.requests_to("/chat-messages")[0].json
        assert chat["query"] == "What is in this image?"
        assert chat["files"][0]["type"] == "image"


async def test_a_slack_connect_stub_is_completed_by_files_info(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        pdf = bot.slack.files.add("shared.pdf", "application/pdf", PDF)
        await bot.event(mention("read it", ts=TS, files=[bot.slack.files.payload(pdf, stub=True)]))
        await bot.answered()
        assert bot.slack.calls_to("files.info")[0]["file"] == pdf.id
        (upload,) = bot.dify.uploads.values()
        assert (upload.filename, upload.data) == ("shared.pdf", PDF)


async def test_an_oversized_file_is_refused_before_any_download(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.dify.parameters = {
            **bot.dify.parameters,
            "system_parameters": {"file_size_limit": 1},
        }
        big = bot.slack.files.add("big.pdf", "application/pdf", b"%PDF" + b"0" * 2_000_000)
        await bot.event(shared("", [bot.slack.files.payload(big)]))
        assert await notice(bot) == (
            "_Sorry, “big.pdf” is too large: this assistant takes files up to 1 MB._"
        )
        assert bot.slack.files.downloads == [] and bot.dify.uploads == {}


async def test_a_type_the_app_cannot_take_is_explained(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        archive = bot.slack.files.add("a.zip", "application/zip", b"PK\x03\x04")
        await bot.event(shared("unzip", [bot.slack.files.payload(archive)]))
        assert await notice(bot) == (
            "_Sorry, this assistant can't take “a.zip”. It accepts: document, image._"
        )
        assert bot.slack.files.downloads == []


async def test_an_app_without_file_upload_says_so(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        parameters(bot, enabled=False)
        pdf = bot.slack.files.add("r.pdf", "application/pdf", PDF)
        await bot.event(shared("hi", [bot.slack.files.payload(pdf)]))
        assert "can't take files" in await notice(bot)


async def test_too_many_files_are_refused(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        parameters(bot, number_limits=1)
        files = [bot.slack.files.add(f"{n}.png", "image/png", PNG) for n in "ab"]
        await bot.event(shared("", [bot.slack.files.payload(f) for f in files]))
        assert await notice(bot) == "_Please send at most 1 files at once._"


LEFT_OUT = "(Left out “{}”: files are only taken from this chat's own storage.)"


async def test_a_redirect_off_slack_is_never_followed(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot, ForeignHost() as foreign:
        bot.slack.files.foreign = foreign
        moved = bot.slack.files.add("moved.pdf", "application/pdf", PDF, redirect="moved")
        away = bot.slack.files.add("cdn.png", "image/png", PNG, redirect="elsewhere")
        files = [bot.slack.files.payload(moved), bot.slack.files.payload(away)]
        await bot.event(shared("two files", files))
        await bot.answered()
        # A redirect on Slack's own host is followed (token kept); one to another host is not.
        auth = [d.authorization for d in bot.slack.files.downloads]
        assert auth == ["Bearer xoxb-test-token"] * 3
        assert foreign.seen == []
        assert [u.data for u in bot.dify.uploads.values()] == [PDF]
        (ask,) = bot.dify.requests_to("/chat-messages")
        assert ask.json["query"] == "two files" and len(ask.json["files"]) == 1
        (answer,) = bot.slack.messages.in_channel("D111")
        assert answer.body == LEFT_OUT.format("cdn.png") + "\n\necho: two files"


@pytest.mark.parametrize(
    "where",
    [
        "foreign",  # another host altogether
        "metrics",  # difybot's own /metrics, over loopback
        "lookalike",  # a Slack-looking name that is not Slack's file host
    ],
)
async def test_a_file_url_off_slack_is_left_out_and_the_text_answered(
    tmp_path: Path, where: str
) -> None:
    async with slack_bot(tmp_path) as bot, ForeignHost() as foreign:
        foreign.files["F9"] = PNG
        url = {
            "foreign": f"{foreign.origin}/cdn/F9",
            "metrics": f"{bot.web_url}/metrics",
            "lookalike": "https://files.slack.com.127.0.0.2.nip.io/files-pri/T1-F9/x.png",
        }[where]
        item = {"id": "F9", "name": "x.png", "mimetype": "image/png", "size": len(PNG),
                "url_private_download": url}  # fmt: skip
        await bot.event(shared("look", [item]))
        await bot.answered()
        assert foreign.seen == []
        (ask,) = bot.dify.requests_to("/chat-messages")
        assert ask.json["query"] == "look" and not ask.json.get("files")
        assert bot.dify.uploads == {}
        (answer,) = bot.slack.messages.in_channel("D111")
        assert answer.body == LEFT_OUT.format("x.png") + "\n\necho: look"


async def test_a_file_alone_that_is_left_out_is_one_line_and_no_question(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        item = {"id": "F8", "name": "m.txt", "mimetype": "text/plain", "size": 10,
                "url_private_download": f"{bot.web_url}/metrics"}  # fmt: skip
        await bot.event(shared("", [item]))
        assert await notice(bot) == f"_{LEFT_OUT.format('m.txt')}_"


async def test_an_audio_clip_is_transcribed_when_the_app_takes_no_audio(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        clip = bot.slack.files.add(
            "clip.webm", "audio/webm", b"\x1aE\xdf\xa3", subtype="slack_audio"
        )
        await bot.event(shared("", [bot.slack.files.payload(clip)]))
        await bot.answered()
        (speech,) = bot.dify.requests_to("/audio-to-text")
        assert speech.files["file"][1] == "audio/webm" and speech.form["user"] == USER
        chat = bot.dify.requests_to("/chat-messages")[0].json
        assert chat["query"] == "transcribed: clip.webm" and "files" not in chat


async def test_a_message_file_image_is_uploaded_into_the_thread(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify={"mode": "chat"}) as bot:
        bot.dify.uploads["tool-1"] = UploadedFile("chart.png", "image/png", PNG, "dify")
        # Chatbot apps send message_file with a URL relative to the API host (FILES_URL unset).
        bot.dify.enqueue("/chat-messages", Answer(chunks=["Here it is."], files=[{"id": "tool-1"}]))
        await bot.event(mention("draw", ts=TS))
        await bot.answered()
        (complete,) = await bot.slack.wait_for("files.completeUploadExternal")
        assert (complete["channel_id"], complete["thread_ts"]) == ("C111", TS)
        (upload,) = bot.slack.files.uploads.values()
        assert (upload.filename, upload.data) == ("tool-1.png", PNG)
        (answer,) = bot.slack.messages.in_channel("C111", TS)
        assert answer.body == "Here it is."


async def test_chatflow_markdown_files_are_reposted_and_unlinked(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot:
        bot.dify.uploads["f-1"] = UploadedFile("pixel.png", "image/png", PNG, "dify")
        url = signed_url(bot.dify.origin, "f-1")
        files = [{"type": "image", "transfer_method": "local_file", "related_id": "f-1",
                  "filename": "pixel.png", "extension": ".png", "mime_type": "image/png",
                  "size": len(PNG), "url": signed_url(bot.dify.origin, "f-1")}]  # fmt: skip
        chunks = ["files: ", f"![pixel.png]({url})"]
        bot.dify.enqueue("/chat-messages", Answer(chunks=chunks, files=files))
        await bot.event(dm("show", ts=TS))
        await bot.answered()
        await bot.slack.wait_for("files.completeUploadExternal")
        (upload,) = bot.slack.files.uploads.values()  # one file, though linked twice
        assert (upload.filename, upload.data) == ("pixel.png", PNG)
        (answer,) = bot.slack.messages.in_channel("D111")
        assert answer.body == "files:" and "sign=" not in str(bot.slack.messages.in_channel("D111"))


async def test_links_to_other_hosts_are_never_fetched(tmp_path: Path) -> None:
    async with slack_bot(tmp_path) as bot, ForeignHost() as foreign:
        foreign.files["x"] = PNG
        link = f"![x]({foreign.origin}/files/x/file-preview?sign=abc)"
        bot.dify.enqueue("/chat-messages", Answer(chunks=[f"see {link}"]))
        await bot.event(dm("show", ts=TS))
        await bot.answered()
        assert foreign.seen == []
        assert "files.getUploadURLExternal" not in bot.slack.methods()


async def test_a_workflow_apps_file_output_is_uploaded(tmp_path: Path) -> None:
    async with slack_bot(tmp_path, dify={"mode": "workflow"}) as bot:
        bot.dify.uploads["out-1"] = UploadedFile("result.csv", "text/csv", b"a,b\n1,2\n", "dify")
        url = signed_url(bot.dify.origin, "out-1")
        files = [{"type": "document", "transfer_method": "tool_file", "filename": "result.csv",
                  "mime_type": "text/csv", "url": url}]  # fmt: skip
        bot.dify.enqueue("/workflows/run", Answer(chunks=["Done."], files=files))
        await bot.event(dm("run it", ts=TS))
        await bot.dify.wait_for("/workflows/run")
        await bot.adapter.answers.drain()
        (upload,) = bot.slack.files.uploads.values()
        assert (upload.filename, upload.data) == ("result.csv", b"a,b\n1,2\n")
        (complete,) = bot.slack.calls_to("files.completeUploadExternal")
        assert complete["channel_id"] == "D111" and "thread_ts" not in complete
