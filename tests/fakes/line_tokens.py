"""Channel access tokens for the fake LINE API: the long-lived token from the console, stateless
tokens issued by ``POST /oauth2/v3/token`` (15 minutes, not revocable), and LINE's 401 texts."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

ACCESS_TOKEN = "line-long-lived-channel-access-token"
STATELESS_TOKEN_SECONDS = 900


class LineTokens:
    def __init__(self, channel_id: str, channel_secret: str, clock: Callable[[], float]) -> None:
        self.channel_id, self.channel_secret = channel_id, channel_secret
        self._clock = clock
        self._expiry: dict[str, float | None] = {ACCESS_TOKEN: None}  # None: until revoked

    def revoke(self, token: str) -> None:
        self._expiry.pop(token, None)

    def refusal(self, authorization: str | None) -> str | None:
        """LINE's 401 message for an ``Authorization`` header, or None when it is good."""
        if authorization is None:
            return (
                "Authorization header required. "
                "Must follow the scheme, 'Authorization: Bearer <ACCESS TOKEN>'"
            )
        scheme, _, token = authorization.partition(" ")
        expiry = self._expiry.get(token, 0.0)
        if scheme == "Bearer" and (expiry is None or expiry > self._clock()):
            return None
        return (
            "Authentication failed due to the following reason: invalid token. "
            "Confirm that the access token in the authorization header is valid."
        )

    def issue_stateless(self, form: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """``/oauth2/v3/token`` with ``client_credentials``: (status, body), OAuth-style errors."""
        if (
            form.get("grant_type") != "client_credentials"
            or form.get("client_id") != self.channel_id
            or form.get("client_secret") != self.channel_secret
        ):
            return 400, {"error": "invalid_client", "error_description": "invalid client"}
        token = "line-stateless-" + secrets.token_urlsafe(32)  # the prefix: for the secret scan
        self._expiry[token] = self._clock() + STATELESS_TOKEN_SECONDS
        body = {
            "token_type": "Bearer",
            "access_token": token,
            "expires_in": STATELESS_TOKEN_SECONDS,
        }
        return 200, body
