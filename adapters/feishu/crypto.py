"""Feishu callbacks' encryption and signature ("Encrypt Key" in the app's event settings).

An encrypted body is ``{"encrypt": base64(iv + AES-256-CBC(json))}`` with key = SHA-256 of the
Encrypt Key, IV = the first 16 bytes, PKCS#7 padding. ``X-Lark-Signature`` is the hex SHA-256 of
``X-Lark-Request-Timestamp`` + ``X-Lark-Request-Nonce`` + Encrypt Key + the raw body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.errors import CallbackRejected


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def is_signed(given: str, *, timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> bool:
    expected = signature(timestamp, nonce, encrypt_key, body)
    return hmac.compare_digest(given.encode(), expected.encode())


def decrypt(encrypt_key: str, sealed: str) -> bytes:
    """The plaintext of an ``encrypt`` field; CallbackRejected (400) when it is not one."""
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise CallbackRejected("encrypt is not base64", status=400) from None
    if len(raw) < 32 or len(raw) % 16:
        raise CallbackRejected("encrypt has no whole AES blocks", status=400)
    key = hashlib.sha256(encrypt_key.encode()).digest()
    decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        raise CallbackRejected("encrypt does not decrypt with this Encrypt Key", status=400)
    return padded[:-pad]
