"""WeChat's side of the crypto, written apart from ours (after wechat.md §2.5) so tests never
check our implementation against itself: what Tencent's servers send and expect."""

from __future__ import annotations

import base64
import hashlib
import os
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


class TencentCrypto:
    def __init__(self, encoding_aes_key: str, receive_id: str) -> None:
        self.key = base64.b64decode(encoding_aes_key + "=")
        self.receive_id = receive_id.encode()

    def encrypt(self, message: bytes) -> str:
        body = os.urandom(16) + struct.pack(">I", len(message)) + message + self.receive_id
        pad = 32 - len(body) % 32
        body += bytes([pad]) * pad
        encryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).encryptor()
        return base64.b64encode(encryptor.update(body) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> bytes:
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16])).decryptor()
        raw = decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()
        raw = raw[: -raw[-1]]
        (length,) = struct.unpack(">I", raw[16:20])
        if raw[20 + length :] != self.receive_id:
            raise AssertionError(
                f"reply sealed for {raw[20 + length :]!r}, not {self.receive_id!r}"
            )
        return raw[20 : 20 + length]
