"""One error taxonomy for every way a MetaChat call can go wrong.

Callers branch on the class, never on message text:

- `UpstreamTransient`: 5xx, a proxy's HTML page, connection refused. Retry with backoff.
  ``sent`` says whether the request may have reached MetaChat.
- `UpstreamRateLimited`: HTTP 429. Retry after ``retry_after``; not a failed attempt.
- `UpstreamRejected`: a ``Fail`` envelope. Permanent; ``message`` is MetaChat's reason.
  Subclasses: `UpstreamTaskNotFound`, `UpstreamQuotaExceeded`, `UpstreamUnknownModel`,
  `UpstreamEndpointMissing`.
- `UpstreamAuthError`: 401/403. Permanent until the operator fixes the key.
- `UpstreamUncertain`: the request was sent and no answer came back. For a submit a task may
  exist (and be charged); for a fetch it is as harmless as a transient error.
- `UpstreamInvalidResponse`: an answer we cannot read (non-JSON 2xx, no task id, unknown status).

``is_retryable`` is the answer for idempotent calls (fetch, balance, usage); a submit must check
for `UpstreamUncertain` first. ``str()`` of every error is safe to log and to show: the client
never puts the API key in one.
"""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime


class UpstreamError(Exception):
    """Base of every MetaChat failure. ``message`` is safe to store and show to users."""

    is_retryable: bool = False

    def __init__(
        self, message: str, *, http_status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, http_status={self.http_status!r})"


class UpstreamTransient(UpstreamError):
    """A failure worth retrying: 5xx, an unreadable error page, or nothing was sent at all."""

    is_retryable = True

    def __init__(
        self,
        message: str,
        *,
        sent: bool,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status, retry_after=retry_after)
        self.sent = sent


class UpstreamRateLimited(UpstreamError):
    """HTTP 429: slow down. ``retry_after`` is seconds from now when MetaChat said so."""

    is_retryable = True


class UpstreamRejected(UpstreamError):
    """MetaChat refused the call (a ``Fail`` envelope): do not retry the same request."""


class UpstreamTaskNotFound(UpstreamRejected):
    """The task id is unknown upstream.

    MetaChat says so in two ways: HTTP 200 ``Fail`` "任务不存在", and, for video tasks, HTTP 500
    ``Fail`` "... Video task not found". Both mean the task does not exist, not that the service
    is down, so both land here rather than in `UpstreamTransient`.
    """


class UpstreamQuotaExceeded(UpstreamRejected):
    """The account is out of API points: every further submit will fail the same way.

    Decided by the message, whatever the HTTP status: the text has been seen in a ``Fail``
    envelope, and a quota may also be reported as a 429, which must not be retried as a rate
    limit (it would never clear by waiting).
    """


class UpstreamEndpointMissing(UpstreamRejected):
    """HTTP 404 for the path itself (``not_found_error``): the catalogue names a path MetaChat
    does not have. ``path`` is the request path; ``mcjobs upstream check`` finds the others."""

    def __init__(self, message: str, *, path: str, http_status: int | None = 404) -> None:
        super().__init__(message, http_status=http_status)
        self.path = path


class UpstreamUnknownModel(UpstreamRejected):
    """The upstream enum refused our model id; ``allowed`` is the list it printed, if any."""

    def __init__(
        self,
        message: str,
        *,
        received: str | None,
        allowed: tuple[str, ...],
        http_status: int | None = None,
    ) -> None:
        super().__init__(message, http_status=http_status)
        self.received = received
        self.allowed = allowed


class UpstreamAuthError(UpstreamError):
    """401/403: the key is missing, wrong, expired or disabled. ``kind`` is MetaChat's type."""

    def __init__(self, message: str, *, kind: str, http_status: int | None = None) -> None:
        super().__init__(message, http_status=http_status)
        self.kind = kind


class UpstreamUncertain(UpstreamError):
    """The request left and no usable answer came back (read timeout, dropped connection).

    Retrying a fetch is safe. Retrying a submit may create and charge a second task.
    """

    is_retryable = True


class UpstreamInvalidResponse(UpstreamError):
    """MetaChat answered something we cannot interpret; the answer's shape is in ``message``."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Returns None when the header is absent or unreadable; never negative.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now or datetime.now(UTC))
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now).total_seconds(), 0.0)
