"""The one error tree of difybot; dependency errors are translated into it at the boundary.

    DifybotError
    ├── ConfigError                      a setting is missing or malformed: exit status 2 at startup
    ├── StartupError                     something difybot needs is not there: exit status 1
    │   ├── DatabaseUnavailable          the database server cannot be reached (``reason``)
    │   └── AddressInUse                 HOST:PORT is taken by another process
    ├── FileError                        a user's or Dify's file could not be passed on (``name``)
    │   ├── FileTooLarge                 over the app's or our size limit (``limit`` in bytes)
    │   └── FileUnavailable              the source would not hand it over (HTML login page,
    │       │                            HTTP error, connection trouble)
    │       └── FileRefused              never fetched: not the platform's own file host, or a
    │                                    host that resolves to no public address
    ├── ShuttingDown                     the process is stopping and takes no new message
    ├── StoreError                       the database failed a statement (connection lost, lock
    │                                    timeout): transient, the next attempt may succeed
    ├── PlatformError                    a chat platform refused, failed, or sent what it must not
    │   ├── CallbackRejected             an inbound callback we refuse (``status`` 400/401/403/
    │   │                                413): bad signature, stale timestamp, replay, bad body
    │   └── PlatformAPIError             a platform API call failed (``code``: the platform's error
    │       │                            code, ``status``: HTTP, ``retry_after``: its rate limit)
    │       ├── MessageTooLong           the platform found the message too long: split smaller
    │       └── BadFormatting            the platform refused the formatting (blocks, entities)
    └── DifyError                        anything that went wrong talking to Dify
        ├── DifyUnavailable              connect error, timeout, 5xx: Dify could not be reached
        │                                (``reason``: refused, unknown host, TLS failure, timeout)
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

Every error carries ``status``, ``code`` and ``retry_after`` (seconds, or None) so callers can
decide without parsing messages, and ``reason`` when a connection failed: the boundary that
catches a library's error names the underlying cause with ``connection_reason`` (httpx-aiohttp,
for one, reports a refused port and an unknown host alike as ``httpx.ConnectTimeout``; only the
cause chain tells them apart). The command line's startup funnel (``difybot.startup``) turns
``ConfigError`` into exit status 2 and every other error here into 1, as one line each.
"""

from __future__ import annotations

import errno
import socket
import ssl

# What went wrong with a connection, in the words a fix starts from.
REFUSED = "connection refused"
UNKNOWN_HOST = "unknown host"
TLS_FAILURE = "TLS failure"
TIMEOUT = "timed out"
RESET = "connection reset"
NO_ROUTE = "no route to host"
_ERRNO_REASONS = {
    errno.ECONNREFUSED: REFUSED,
    errno.ECONNRESET: RESET,
    errno.ETIMEDOUT: TIMEOUT,
    errno.EHOSTUNREACH: NO_ROUTE,
    errno.ENETUNREACH: NO_ROUTE,
}


class DifybotError(Exception):
    """Base of every error difybot raises on purpose; all carry status, code and retry_after."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        retry_after: float | None = None,
        reason: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.reason = reason  # a connection failure's cause (``connection_reason``), else ""


class ConfigError(DifybotError):
    """A setting is missing or malformed; the message names the variable."""


class StartupError(DifybotError):
    """Something difybot needs to start is missing; the message says what and how to fix it."""


class DatabaseUnavailable(StartupError):
    """The database server could not be reached; ``reason`` says how the connection failed."""


class AddressInUse(StartupError):
    """The HTTP listener's address is taken (or not ours to bind)."""


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


class ShuttingDown(DifybotError):
    """The process is stopping: the message is not taken (the platform redelivers, or the user
    is told to try again)."""


class StoreError(DifybotError):
    """The database failed a statement; storage raises it for its driver's errors, so the
    core can tell a database hiccup from a bug without knowing the driver."""


class PlatformError(DifybotError):
    """Something went wrong on a chat platform's side of an adapter."""


class CallbackRejected(PlatformError):
    """An inbound callback failed a check; ``status`` is what the webhook answers (400 unless
    said; no detail for a forger to learn from), ``retry_after`` its Retry-After."""

    def __init__(
        self, message: str, *, status: int = 400, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)


class PlatformAPIError(PlatformError):
    """A platform API call failed; ``code`` is the platform's own error code as text."""


class MessageTooLong(PlatformAPIError):
    """The platform refused a message as too long; the caller splits smaller and sends again."""


class BadFormatting(PlatformAPIError):
    """The platform refused the message's formatting; the caller falls back to plainer text."""


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


def connection_reason(exc: BaseException) -> str:
    """Why a connection failed, from the deepest cause in ``exc``'s chain that says it plainly:
    ``REFUSED``, ``UNKNOWN_HOST``, ``TLS_FAILURE`` (with the TLS library's words), ``TIMEOUT``,
    ``RESET``, ``NO_ROUTE``; "" when the chain does not tell."""
    found = ""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        found = _reason_of(link) or found
        link = link.__cause__ or link.__context__
    return found


def _reason_of(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"{TLS_FAILURE}: {exc.verify_message or 'certificate not trusted'}"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):  # aiohttp's are SSLErrors too
        return f"{TLS_FAILURE}: {getattr(exc, 'reason', None) or exc}"
    if isinstance(exc, socket.gaierror):
        return UNKNOWN_HOST
    if isinstance(exc, TimeoutError):
        return TIMEOUT
    if isinstance(exc, OSError) and exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    return ""
