"""WeChat/WeCom crypto against Tencent's worked example, wechatpy's vectors and wechatpy itself."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wechatpy.crypto import WeChatCrypto as OracleOfficial
from wechatpy.enterprise.crypto import WeChatCrypto as OracleWeCom

from adapters.tencent.crypto import MessageCrypto, is_valid_signature, signature
from bot.errors import CallbackRejected, ConfigError

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent / "payloads" / "wechat" / "tencent_vectors.json").read_text()
)
OA = VECTORS["official"]
WECOM = VECTORS["wecom"]


def official() -> MessageCrypto:
    return MessageCrypto(OA["token"], OA["encoding_aes_key"], OA["app_id"])


def wecom() -> MessageCrypto:
    return MessageCrypto(WECOM["token"], WECOM["encoding_aes_key"], WECOM["corp_id"])


def test_plain_and_url_check_signatures_match_tencents_example() -> None:
    plain, check = OA["plain_signature"], OA["url_check"]
    assert signature(OA["token"], plain["timestamp"], plain["nonce"]) == plain["signature"]
    assert is_valid_signature(check["signature"], OA["token"], check["timestamp"], check["nonce"])
    assert not is_valid_signature(check["signature"], OA["token"], check["timestamp"], "1")


def test_official_inbound_decrypts_to_tencents_message() -> None:
    inbound = OA["inbound"]
    message = official().open(
        inbound["msg_signature"], inbound["timestamp"], inbound["nonce"], inbound["encrypt"]
    )
    assert message.decode() == inbound["message"]
    # The URL's plain signature is present too and still covers only token/timestamp/nonce.
    assert signature(OA["token"], inbound["timestamp"], inbound["nonce"]) == inbound["signature"]


def test_official_reply_encrypts_to_tencents_ciphertext_and_signature() -> None:
    reply = OA["reply"]
    sealed = official().seal(
        reply["message"].encode(),
        timestamp=reply["timestamp"],
        nonce=reply["nonce"],
        random=reply["random"].encode(),
    )
    assert sealed.encrypt == reply["encrypt"]
    assert sealed.signature == reply["msg_signature"]


def test_wecom_encrypted_echostr_and_wrong_nonce() -> None:
    check = WECOM["url_check"]
    plain = wecom().open(
        check["msg_signature"], check["timestamp"], check["nonce"], check["echostr"]
    )
    assert plain.decode() == check["plain"]
    with pytest.raises(CallbackRejected) as refused:
        wecom().open(
            check["msg_signature"], check["timestamp"], check["wrong_nonce"], check["echostr"]
        )
    assert refused.value.status == 403


def test_wecom_inbound_and_reply_vectors() -> None:
    inbound, reply = WECOM["inbound"], WECOM["reply"]
    xml = wecom().open(
        inbound["msg_signature"], inbound["timestamp"], inbound["nonce"], inbound["encrypt"]
    )
    assert b"<Content><![CDATA[test]]></Content>" in xml
    assert b"4363689963896700987" in xml
    sealed = wecom().seal(
        reply["message"].encode(),
        timestamp=reply["timestamp"],
        nonce=reply["nonce"],
        random=reply["random"].encode(),
    )
    assert (sealed.encrypt, sealed.signature) == (reply["encrypt"], reply["msg_signature"])


def test_a_message_for_another_app_is_refused() -> None:
    other = MessageCrypto(OA["token"], OA["encoding_aes_key"], "wx0000000000000000")
    with pytest.raises(CallbackRejected) as refused:
        other.decrypt(OA["inbound"]["encrypt"])
    assert refused.value.status == 403


@pytest.mark.parametrize(
    "ciphertext",
    ["not base64!", "", base64.b64encode(b"short").decode(), base64.b64encode(bytes(32)).decode()],
)
def test_garbage_ciphertext_is_a_400(ciphertext: str) -> None:
    with pytest.raises(CallbackRejected) as refused:
        official().decrypt(ciphertext)
    assert refused.value.status == 400


@pytest.mark.parametrize("key", ["short", "A" * 42 + "!", ""])
def test_a_malformed_encoding_aes_key_is_a_config_error(key: str) -> None:
    with pytest.raises(ConfigError):
        MessageCrypto("t", key, "wx")


def test_wechatpy_opens_what_we_seal_and_we_open_what_it_seals() -> None:
    ours = official()
    oracle = OracleOfficial(OA["token"], OA["encoding_aes_key"], OA["app_id"])
    xml = "<xml><Content><![CDATA[你好 ]]]]><![CDATA[> world]]></Content></xml>"
    sealed = ours.seal(xml.encode(), timestamp="1714112445", nonce="415670741")
    envelope = (
        f"<xml><Encrypt><![CDATA[{sealed.encrypt}]]></Encrypt>"
        f"<MsgSignature>{sealed.signature}</MsgSignature></xml>"
    )
    assert oracle.decrypt_message(envelope, sealed.signature, "1714112445", "415670741") == xml
    theirs = oracle.encrypt_message(xml, "415670741", "1714112445")
    outer = dict(
        (tag, theirs.split(f"<{tag}><![CDATA[")[1].split("]]>")[0])
        for tag in ("Encrypt", "MsgSignature")
    )
    assert (
        ours.open(outer["MsgSignature"], "1714112445", "415670741", outer["Encrypt"]).decode()
        == xml
    )


def test_wechatpy_wecom_oracle_agrees_on_the_echostr() -> None:
    check = WECOM["url_check"]
    oracle = OracleWeCom(WECOM["token"], WECOM["encoding_aes_key"], WECOM["corp_id"])
    expected = oracle.check_signature(
        check["msg_signature"], check["timestamp"], check["nonce"], check["echostr"]
    )
    assert expected == check["plain"]


@given(st.binary(max_size=3000), st.sampled_from(["", "wx49f0ab532d5d035a", "企业"]))
def test_round_trip_for_any_message_and_receive_id(message: bytes, receive_id: str) -> None:
    crypto = MessageCrypto(WECOM["token"], WECOM["encoding_aes_key"], receive_id)
    sealed = crypto.seal(message, timestamp="1", nonce="2")
    assert len(base64.b64decode(sealed.encrypt)) % 32 == 0
    assert crypto.open(sealed.signature, "1", "2", sealed.encrypt) == message
