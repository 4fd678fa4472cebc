"""The WeChat family's API error, in the one tree of ``bot.errors`` (``PlatformAPIError``).

WeChat answers errors as HTTP 200 with ``{"errcode": n, "errmsg": ...}``: ``code`` is the errcode
as text, ``status`` the HTTP status; a refused callback is ``bot.errors.CallbackRejected``.
"""

from __future__ import annotations

from bot.errors import PlatformAPIError

# access_token problems: the token is invalid/not latest (40001), invalid (40014), expired (42001).
TOKEN_ERRORS = frozenset({40001, 40014, 42001})


class WeChatAPIError(PlatformAPIError):
    """A WeChat/WeCom API call failed; ``errcode`` is the platform's number (-1 = unreachable)."""

    def __init__(self, message: str, *, errcode: int, status: int | None = None) -> None:
        super().__init__(message, status=status, code=str(errcode))
        self.errcode = errcode

    @property
    def is_token_error(self) -> bool:
        return self.errcode in TOKEN_ERRORS
