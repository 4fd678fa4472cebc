"""Attachments end to end on WeChat and WeCom: media in through Dify uploads, answer files out."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters.tencent.crypto import to_aes_key
from tests.fakes.dify import FakeDify, UploadedFile
from tests.fakes.dify_behaviours import Answer
from tests.fakes.slack_files import ForeignHost
from tests.fakes.wechat import FakeWeChatAPI, Media
from tests.fakes.wechat_app import (
    AES_KEY,
    BOT_AES_KEY,
    TIMEOUT,
    TOKEN,
    difybot,
    wechat_settings,
    wecom_settings,
)
from tests.fakes.wechat_push import OfficialAccountServer
from tests.fakes.wecom_push import AIBotServer, WeComServer

USER = "o9AgO5Kd5ggOC-bXrbNODIiE3bGY"
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 20
PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 100
SEND = "/cgi-bin/message/send"


def official(url: str, api: FakeWeChatAPI) -> OfficialAccountServer:
    return OfficialAccountServer(f"{url}/wechat", token=TOKEN, app_id=api.app_id, timeout=TIMEOUT)


def image_push(server: OfficialAccountServer, msg_id: int, media_id: str) -> dict[str, object]:
    fields = {**server.message(USER, msg_id, ""), "MsgType": "image", "MediaId": media_id,
              "PicUrl": "http://mmbiz.qpic.invalid/x.jpg"}  # fmt: skip
    del fields["Content"]
    return fields


def voice_push(server: OfficialAccountServer, msg_id: int, fmt: str) -> dict[str, object]:
    fields = {**server.message(USER, msg_id, ""), "MsgType": "voice", "MediaId": "voice-1",
              "Format": fmt}  # fmt: skip
    del fields["Content"]
    return fields


async def test_an_image_from_wechat_reaches_dify(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    api.media["img-1"] = Media(JPEG, "image/jpeg")
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = official(running.url, api)
        reply = await server.push(image_push(server, 21, "img-1"))
    ((file_id, upload),) = dify.uploads.items()
    user = f"wechat:{api.app_id}:{USER}"
    assert upload == UploadedFile("img-1.jpg", "image/jpeg", JPEG, user)
    chat = dify.requests_to("/chat-messages")[0].json
    assert chat["files"] == [
        {"type": "image", "transfer_method": "local_file", "upload_file_id": file_id}
    ]
    assert chat["query"] == "请查看附件。" and chat["user"] == user
    assert reply.content == "echo: 请查看附件。"


async def test_an_oversized_image_is_refused_before_it_is_all_read(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.parameters = {**dify.parameters, "system_parameters": {"image_file_size_limit": 1}}
    api.media["huge"] = Media(b"\xff\xd8\xff" + b"\0" * (64 * 1024 * 1024), "image/jpeg")
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = official(running.url, api)
        reply = await server.push(image_push(server, 22, "huge"))
    assert reply.content == "抱歉，“huge.jpg”太大了：该助手接收的文件最大为 1 MB。"
    assert api.media_sent["huge"] < 32 * 1024 * 1024  # the download stopped near the limit
    assert dify.uploads == {} and dify.requests_to("/chat-messages") == []


@pytest.mark.allow_warnings(r"cannot be transcribed without a decoder")
async def test_voice_is_transcribed_with_and_without_recognition(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    # WeChat may say "speex" for what media/get serves as AMR: the bytes decide.
    api.media["voice-1"] = Media(b"#!AMR\n\x3c\x00", "audio/amr")
    async with difybot(dify, tmp_path / "db", **wechat_settings(api)) as running:
        server = official(running.url, api)
        heard = await server.push({**voice_push(server, 23, "amr"), "Recognition": "几点了"})
        transcribed = await server.push(voice_push(server, 24, "speex"))
        api.media["voice-1"] = Media(b"Speex   \x00\x01", "audio/speex")
        undecodable = await server.push(voice_push(server, 25, "speex"))
    assert heard.content == "echo: 几点了"
    assert transcribed.content == "echo: transcribed: voice-1.amr"
    (speech,) = dify.requests_to("/audio-to-text")
    assert speech.files["file"][1] == "audio/amr"
    assert undecodable.content == "抱歉，没能识别这条语音，请改用文字。"


async def test_a_message_file_image_is_sent_to_wecom_as_an_image(
    api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with FakeDify(mode="chat") as dify:
        dify.uploads["tool-7"] = UploadedFile("chart.png", "image/png", PNG, "dify")
        answer = Answer(chunks=["Your chart."], files=[{"id": "tool-7"}])
        dify.enqueue("/chat-messages", answer)
        async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
            server = WeComServer(
                f"{running.url}/wecom",
                token=TOKEN,
                aes_key=AES_KEY,
                corp_id=api.corp_id,
                agent_id="1000002",
            )
            await server.push(server.message("zhaoliu", 31, "chart please"))
            text, image = await api.wait_for(SEND, 2)
    assert text.json["markdown"]["content"] == "Your chart."
    ((media_id, media),) = api.uploaded.items()
    assert media.data == PNG
    (upload,) = api.calls_to("/cgi-bin/media/upload")
    assert upload.query["type"] == "image"
    assert image.json == {"touser": "zhaoliu", "agentid": 1000002, "msgtype": "image",
                          "image": {"media_id": media_id}}  # fmt: skip


def encrypt_media(data: bytes) -> bytes:
    """The WeCom AI bot's media encryption (callback mode): AES-256-CBC, PKCS#7 to 32 bytes."""
    key = to_aes_key(BOT_AES_KEY)
    pad = 32 - len(data) % 32
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return encryptor.update(data + bytes([pad]) * pad) + encryptor.finalize()


async def test_a_wecom_bot_image_and_file_are_decrypted_and_uploaded(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    dify.parameters = copy.deepcopy(dify.parameters)
    dify.parameters["file_upload"]["number_limits"] = 5
    pdf = b"%PDF-1.4 tiny"
    api.cdn.update({"img": encrypt_media(JPEG), "doc": encrypt_media(pdf)})
    async with difybot(dify, tmp_path / "db", **wecom_settings(api)) as running:
        bot = AIBotServer(f"{running.url}/wecom/bot", token="bot-token", aes_key=BOT_AES_KEY)
        mixed = {**bot.message("m-img", ""), "msgtype": "mixed", "mixed": {"msg_item": [
            {"msgtype": "text", "text": {"content": "what is this"}},
            {"msgtype": "image", "image": {"url": f"{api.url}/cdn/img"}}]}}  # fmt: skip
        await bot.converse(mixed)
        document = {**bot.message("m-doc", ""), "msgtype": "file",
                    "file": {"url": f"{api.url}/cdn/doc"}}  # fmt: skip
        await bot.converse(document)
    file, image = sorted(dify.uploads.values(), key=lambda u: u.filename)
    assert (file.filename, file.mime_type, file.data) == ("file.pdf", "application/pdf", pdf)
    assert (image.filename, image.data) == ("image0.jpg", JPEG)
    first, second = (r.json for r in dify.requests_to("/chat-messages"))
    assert first["query"] == "what is this" and first["files"][0]["type"] == "image"
    assert second["files"][0]["type"] == "document"


async def test_a_wecom_bot_file_on_another_host_is_left_out_and_the_text_answered(
    dify: FakeDify, api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with (
        ForeignHost() as elsewhere,
        difybot(dify, tmp_path / "db", **wecom_settings(api)) as running,
    ):
        elsewhere.files["img"] = encrypt_media(JPEG)
        bot = AIBotServer(f"{running.url}/wecom/bot", token="bot-token", aes_key=BOT_AES_KEY)
        mixed = {**bot.message("m-away", ""), "msgtype": "mixed", "mixed": {"msg_item": [
            {"msgtype": "text", "text": {"content": "and this?"}},
            {"msgtype": "image", "image": {"url": f"{elsewhere.origin}/cdn/img"}}]}}  # fmt: skip
        states = await bot.converse(mixed)
    assert elsewhere.seen == []  # never contacted
    (ask,) = dify.requests_to("/chat-messages")
    assert ask.json["query"] == "and this?" and not ask.json.get("files")
    assert (
        states[-1]["content"]
        == "（未采用“image0.jpg”：只接收本聊天平台自己存储的文件。）\n\necho: and this?"
    )


async def test_a_verified_account_sends_answer_images_as_images(
    api: FakeWeChatAPI, tmp_path: Path
) -> None:
    async with FakeDify(mode="chat") as dify:
        dify.uploads["tool-8"] = UploadedFile("map.png", "image/png", PNG, "dify")
        dify.enqueue("/chat-messages", Answer(chunks=["The map."], files=[{"id": "tool-8"}]))
        settings = wechat_settings(api, wechat_account_verified=True)
        async with difybot(dify, tmp_path / "db", **settings) as running:
            server = official(running.url, api)
            reply = await server.push(server.message(USER, 41, "map?"))
            (sent,) = await api.wait_for("/cgi-bin/message/custom/send")
    assert reply.content == "The map."
    ((media_id, media),) = api.uploaded.items()
    assert media.data == PNG
    assert sent.json == {"touser": USER, "msgtype": "image", "image": {"media_id": media_id}}
