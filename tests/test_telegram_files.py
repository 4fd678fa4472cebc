"""Telegram files both ways, end to end: photos, documents and voice notes in (getFile, the file
download, Dify's upload or speech-to-text), Dify's answer files out (sendPhoto, sendDocument);
and the voice notes' Ogg → WebM remux checked by FFmpeg (PyAV) as an independent decoder."""

from __future__ import annotations

import io
from pathlib import Path

import av

from adapters.telegram.voice import NotOggOpus, ogg_opus_to_webm, packet_samples
from tests.fakes.dify import Answer, FakeDify, UploadedFile
from tests.fakes.dify_state import signed_url
from tests.fakes.telegram import FakeTelegram
from tests.test_telegram_e2e import answered, telegram_bot

VOICE = (Path(__file__).parent / "payloads/telegram/voice_note.ogg").read_bytes()  # 1 s, libopus
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00"
PNG += b"\x90\x91h6" + b"\x00" * 64


async def test_a_photo_with_a_caption_is_uploaded_to_dify(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.photo(chat, PNG, caption="What is this?")
        await answered(tg, running, chat.id)
    (get_file,) = tg.calls_to("getFile")
    assert get_file.ok and get_file.args["file_id"]
    assert tg.downloads and tg.downloads[0].startswith("photos/")
    (upload,) = dify.uploads.values()
    assert upload.data == PNG
    (asked,) = dify.requests_to("/chat-messages")
    assert asked.json["query"] == "What is this?"
    assert asked.json["files"][0]["type"] == "image"


async def test_a_document_is_uploaded_with_its_name(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.document(chat, b"%PDF-1.4 tiny", file_name="notes.pdf", caption="summarise")
        await answered(tg, running, chat.id)
    (upload,) = dify.uploads.values()
    assert (upload.filename, upload.data) == ("notes.pdf", b"%PDF-1.4 tiny")


async def test_a_voice_note_reaches_speech_to_text_as_webm(dify: FakeDify, tmp_path: Path) -> None:
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.voice(chat, VOICE, duration=1)
        await answered(tg, running, chat.id)
    (speech,) = dify.requests_to("/audio-to-text")
    filename, mime_type, data = speech.files["file"]
    assert (filename, mime_type) == ("voice.webm", "audio/webm")  # Dify refuses audio/ogg
    assert data.startswith(b"\x1a\x45\xdf\xa3")  # an EBML (WebM) file
    (asked,) = dify.requests_to("/chat-messages")
    assert asked.json["query"] == "transcribed: voice.webm"


async def test_answer_files_go_out_as_photo_and_document(dify: FakeDify, tmp_path: Path) -> None:
    dify.uploads["img-1"] = UploadedFile("chart.png", "image/png", PNG, "dify")
    dify.uploads["csv-1"] = UploadedFile("result.csv", "text/csv", b"a,b\n1,2\n", "dify")
    files = [
        {"type": "image", "transfer_method": "local_file", "related_id": "img-1",
         "filename": "chart.png", "extension": ".png", "mime_type": "image/png",
         "size": len(PNG), "url": signed_url(dify.origin, "img-1")},
        {"type": "document", "transfer_method": "local_file", "related_id": "csv-1",
         "filename": "result.csv", "extension": ".csv", "mime_type": "text/csv",
         "size": 8, "url": signed_url(dify.origin, "csv-1")},
    ]  # fmt: skip
    dify.enqueue("/chat-messages", Answer(chunks=["Here they are."], files=files))
    async with FakeTelegram() as tg, telegram_bot(dify, tg, tmp_path) as running:
        chat = tg.inbound.private_chat()
        tg.inbound.text(chat, "make me files")
        await answered(tg, running, chat.id)
        await tg.wait_for("sendDocument")
    (photo,) = tg.calls_to("sendPhoto")
    (document,) = tg.calls_to("sendDocument")
    assert photo.ok and photo.files["photo"].data == PNG
    assert document.ok and document.files["document"].filename == "result.csv"
    assert tg.state.sent_by_bot(chat.id)[0].text == "Here they are."


def test_the_remuxed_voice_note_decodes_in_ffmpeg() -> None:
    webm = ogg_opus_to_webm(VOICE)
    with av.open(io.BytesIO(webm), format="webm") as container:
        (stream,) = container.streams.audio
        assert stream.codec_context.name == "opus"
        decoded = sum(frame.samples for frame in container.decode(stream))
    with av.open(io.BytesIO(VOICE), format="ogg") as original:
        expected = sum(frame.samples for frame in original.decode(audio=0))
    assert abs(decoded - expected) <= 960  # the same audio, give or take one 20 ms frame


def test_what_is_not_ogg_opus_is_refused() -> None:
    for data in (b"", b"RIFF....WAVE", VOICE.replace(b"OpusHead", b"VorbHead")):
        try:
            ogg_opus_to_webm(data)
        except NotOggOpus:
            continue
        raise AssertionError(f"accepted {data[:8]!r}")
    assert packet_samples(bytes([0b11111_000])) == 960  # CELT 20 ms, one frame
    assert packet_samples(bytes([0b00001_011, 3])) == 3 * 960  # SILK 20 ms, three frames
