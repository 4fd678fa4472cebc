"""The WeChat family's errors, hung under the one tree of ``bot.errors``.

    DifybotError
    └── WeChatError                      anything the WeChat/WeCom adapters raise on purpose
        ├── CallbackRejected             an inbound callback we must refuse (``status`` 400/403/413)
        └── WeChatAPIError               the API answered ``errcode != 0`` or could not be reached
                                         (``code`` = errcode as text, ``status`` = HTTP status)

Callers decide on ``status`` and ``code`` without parsing messages; ``retry_after`` is set when the
platform's limit says how long to wait.
"""

from __future__ import annotations

from bot.errors import DifybotError

# access_token problems: the token is invalid/not latest (40001), invalid (40014), expired (42001).
TOKEN_ERRORS = frozenset({40001, 40014, 42001})


class WeChatError(DifybotError):
    """Base of the WeChat adapters' errors (``status``, ``code``, ``retry_after`` as every
    difybot error)."""


class CallbackRejected(WeChatError):
    """An inbound callback failed a check: bad signature, bad ciphertext, oversize or bad XML."""


class WeChatAPIError(WeChatError):
    """A WeChat/WeCom API call failed; ``errcode`` is the platform's number (-1 = unreachable)."""

    def __init__(self, message: str, *, errcode: int, status: int | None = None) -> None:
        super().__init__(message, status=status, code=str(errcode))
        self.errcode = errcode

    @property
    def is_token_error(self) -> bool:
        return self.errcode in TOKEN_ERRORS
