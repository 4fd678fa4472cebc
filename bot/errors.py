"""The one error tree of difybot; dependency errors are translated into it at the boundary.

    DifybotError
    ├── ConfigError                      a setting is missing or malformed (startup only)
    ├── FileError                        a user's or Dify's file could not be passed on (``name``)
    │   ├── FileTooLarge                 over the app's or our size limit (``limit`` in bytes)
    │   └── FileUnavailable              the source would not hand it over (HTML login page,
    │       │                            HTTP error, connection trouble)
    │       └── FileRefused              never fetched: not the platform's own file host, or a
    │                                    host that resolves to no public address
    └── DifyError                        anything that went wrong talking to Dify
        ├── DifyUnavailable              connect error, timeout, 5xx: Dify could not be reached
        ├── DifyProtocolError            the response broke the wire format (oversize line, bad SSE)
        ├── DifyStreamCut                the stream ended mid-answer without a closing event
        └── DifyHTTPError                a JSON error envelope ({code, message, status})
            ├── DifyRateLimited          429 too_many_requests / 400 "Too many requests…" (retry)
            ├── DifyQuotaExceeded        429 rate_limit_error / provider_quota_exceeded (no retry)
            ├── DifyAuthError            401 / 403: bad key, app disabled
            ├── ConversationNotFound     404 "Conversation Not Exists", conversation_completed, or a
            │                            stream that proves the stored conversation is gone
            ├── DifyStreamError          an in-stream ``error`` event (HTTP was already 200)
            ├── RunNotFound              404 on /workflow/{id}/events: unknown run, another
            │                            user's or app's (Dify says "Workflow run not found")
            └── FormError                a Human Input form cannot take this submission
                ├── FormNotFound         404: unknown token, another app's form
                ├── FormAlreadySubmitted 412 human_input_form_submitted: a submit already won
                ├── FormExpired          412 human_input_form_expired
                └── FormInvalid          400 invalid_form_data: the form stays open; ``message``
                                         is Dify's reason ("Missing required inputs: note")

Every Dify error carries ``status``, ``code`` and ``retry_after`` (seconds, or None) so callers can
decide without parsing messages.
"""

from __future__ import annotations


class DifybotError(Exception):
    """Base of every error difybot raises on purpose; all carry status, code and retry_after."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after


class ConfigError(DifybotError):
    """A setting is missing or malformed; the message names the variable."""


class FileError(DifybotError):
    """A file could not be passed on; ``name`` is the file's name as the user knows it."""

    def __init__(self, message: str, *, name: str = "") -> None:
        super().__init__(message)
        self.name = name


class FileTooLarge(FileError):
    """The file is larger than ``limit`` bytes (known from its size, or found while streaming)."""

    def __init__(self, message: str, *, name: str = "", limit: int = 0) -> None:
        super().__init__(message, name=name)
        self.limit = limit


class FileUnavailable(FileError):
    """The file's source refused it, answered something else, or sent us where we do not go."""


class FileRefused(FileUnavailable):
    """The file's URL (or a redirect) leads somewhere we never fetch from; it was not fetched.
    The message is answered without it."""


class DifyError(DifybotError):
    """Something went wrong talking to Dify."""

    retryable = False


class DifyUnavailable(DifyError):
    """Dify could not be reached or answered 5xx before the stream started."""

    retryable = True


class DifyProtocolError(DifyError):
    """The response did not follow Dify's wire format."""


class DifyStreamCut(DifyError):
    """The connection broke after the answer started; what arrived so far is all there is."""


class DifyHTTPError(DifyError):
    """Dify answered with its JSON error envelope."""


class DifyRateLimited(DifyHTTPError):
    """The app's concurrency limit was hit; worth retrying after a pause."""

    retryable = True


class DifyQuotaExceeded(DifyHTTPError):
    """A quota is used up; retrying will not help until it resets."""


class DifyAuthError(DifyHTTPError):
    """The API key is wrong or the app is not available through the API."""


class ConversationNotFound(DifyHTTPError):
    """The stored conversation id is unknown to Dify (deleted, foreign, or ended)."""


class DifyStreamError(DifyHTTPError):
    """Dify reported an error inside a stream that had already started."""


class RunNotFound(DifyHTTPError):
    """Dify knows no such workflow run for this app and user (the events endpoint's 404)."""


class FormError(DifyHTTPError):
    """A Human Input form cannot take this submission."""


class FormNotFound(FormError):
    """No form with this token for this app (or it was not delivered to the WebApp)."""


class FormAlreadySubmitted(FormError):
    """Someone's submit already won: forms are one-shot, whoever submits first."""


class FormExpired(FormError):
    """The form's expiration time has passed (or it timed out)."""


class FormInvalid(FormError):
    """Dify refused the values or the action; the form stays open for another try."""
