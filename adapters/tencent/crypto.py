"""WeChat/WeCom callback crypto (WXBizMsgCrypt): SHA-1 signatures and AES-256-CBC envelopes.

One algorithm serves the Official Account (receive id = AppID), the WeCom app (CorpID) and the
WeCom AI bot (empty receive id): ``key = b64decode(EncodingAESKey + "=")``, IV = key[:16],
PKCS#7 padding to 32-byte blocks, plaintext = 16 random bytes + 4-byte big-endian length + message
+ receive id. Verified against Tencent's worked example and wechatpy's vectors (tests).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import CallbackRejected, ConfigError

BLOCK = 32  # WeChat pads to 32 bytes, not AES's 16
_HEADER = 20  # 16 random bytes + 4-byte length


def signature(*parts: str) -> str:
    """``sha1(''.join(sorted(parts)))`` in lowercase hex: every WeChat signature is this."""
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def is_valid_signature(given: str, *parts: str) -> bool:
    """Constant-time comparison of a received signature with the one we compute."""
    return hmac.compare_digest(given.lower().encode("ascii", "replace"), signature(*parts).encode())


def to_aes_key(encoding_aes_key: str) -> bytes:
    """The 32-byte AES key from the 43-character EncodingAESKey; ConfigError if malformed."""
    if len(encoding_aes_key) != 43 or not (
        encoding_aes_key.isascii() and encoding_aes_key.isalnum()
    ):
        raise ConfigError("EncodingAESKey must be 43 letters and digits")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except binascii.Error as exc:
        raise ConfigError("EncodingAESKey is not valid base64") from exc
    return key


@dataclass(frozen=True, slots=True)
class Sealed:
    """An encrypted reply: what goes into the XML or JSON reply envelope."""

    encrypt: str
    signature: str
    timestamp: str
    nonce: str


class MessageCrypto:
    """Opens and seals callback messages for one token + key + receive id.

    ``receive_id`` None skips the receive-id check (the AI bot, whose id is documented as empty but
    not verifiable here); the signature, keyed by the token, still authenticates the message.
    """

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str | None) -> None:
        self.token = token
        self._key = to_aes_key(encoding_aes_key)
        self._receive_id = None if receive_id is None else receive_id.encode("utf-8")

    def verify(self, given: str, timestamp: str, nonce: str, encrypted: str) -> None:
        if not is_valid_signature(given, self.token, timestamp, nonce, encrypted):
            raise CallbackRejected("bad msg_signature", status=403)

    def open(self, given: str, timestamp: str, nonce: str, encrypted: str) -> bytes:
        """Check the signature over the ciphertext, then decrypt it."""
        self.verify(given, timestamp, nonce, encrypted)
        return self.decrypt(encrypted)

    def seal(
        self, plaintext: bytes, *, timestamp: str, nonce: str, random: bytes | None = None
    ) -> Sealed:
        encrypted = self.encrypt(plaintext, random=random)
        sig = signature(self.token, timestamp, nonce, encrypted)
        return Sealed(encrypt=encrypted, signature=sig, timestamp=timestamp, nonce=nonce)

    def encrypt(self, plaintext: bytes, *, random: bytes | None = None) -> str:
        prefix = secrets.token_bytes(16) if random is None else random
        if len(prefix) != 16:
            raise ValueError("the random prefix must be 16 bytes")
        body = prefix + struct.pack(">I", len(plaintext)) + plaintext + (self._receive_id or b"")
        pad = BLOCK - len(body) % BLOCK
        body += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> bytes:
        """The message inside ``encrypted``; CallbackRejected(400/403) when anything is off."""
        try:
            raw = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise CallbackRejected("ciphertext is not base64", status=400) from None
        if not raw or len(raw) % 16:
            raise CallbackRejected("ciphertext length is not a whole number of blocks", status=400)
        decryptor = self._cipher().decryptor()
        body = _unpad(decryptor.update(raw) + decryptor.finalize())
        if len(body) < _HEADER:
            raise CallbackRejected("plaintext too short", status=400)
        (length,) = struct.unpack(">I", body[16:_HEADER])
        if _HEADER + length > len(body):
            raise CallbackRejected("message length out of bounds", status=400)
        message, receive_id = body[_HEADER : _HEADER + length], body[_HEADER + length :]
        if self._receive_id is not None and not hmac.compare_digest(receive_id, self._receive_id):
            raise CallbackRejected("message is for another app", status=403)
        return message

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))


def _unpad(data: bytes) -> bytes:
    pad = data[-1]
    if not 1 <= pad <= BLOCK or data[-pad:] != bytes([pad]) * pad:
        raise CallbackRejected("bad padding", status=400)
    return data[:-pad]
