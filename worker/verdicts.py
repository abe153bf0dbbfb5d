"""What a failed submit means for its job: the retry rules of docs/pipeline.md in one function.

- Nothing could be sent (connect refused, DNS): queued again after a back-off shared by all
  submits, which pause meanwhile. No attempt spent: nothing can have been charged.
- 429: queued again after ``Retry-After``; the provider is slowed down. No attempt spent.
- 5xx or an unreadable error page: queued again with the job's own back-off, an attempt spent;
  after ``SUBMIT_MAX_ATTEMPTS`` it fails with ``upstream_unavailable``.
- A ``Fail`` envelope: fails with ``upstream_rejected`` and MetaChat's message.
- The account is out of points (MetaChat's quota message, in a ``Fail`` envelope or a 429):
  fails with ``upstream_quota_exceeded``, and all submits pause for a minute rather than burning
  the whole queue. Never retried as a rate limit: waiting does not buy points.
- 401/403: queued again, all submits paused, logged as an error. A wrong key is the operator's
  to fix; failing every queued job meanwhile would burn batches for nothing.
- Sent but unanswered (read timeout): fails with ``submit_uncertain``: MetaChat may have made
  (and will charge) a task we have no id for. ``RESUBMIT_ON_UNCERTAIN`` retries it instead.
- An answer we cannot read (no task id, not JSON): fails with ``invalid_upstream_response``;
  a task may exist, so it is not resubmitted either.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from metachat.errors import (
    UpstreamAuthError,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUncertain,
)
from worker import codes


class Action(enum.Enum):
    """What happens to the job."""

    RETRY = "retry"  # back to the queue with the job's own back-off; an attempt is spent
    FAIL = "fail"
    RATE_LIMITED = "rate_limited"  # back after Retry-After; the provider is slowed down
    UNREACHABLE = "unreachable"  # back after the shared back-off; submits pause meanwhile
    AUTH = "auth"  # back after the auth pause; submits pause meanwhile


@dataclass(frozen=True)
class Verdict:
    """The decision for one failed submit. ``message`` is safe to store and show."""

    action: Action
    message: str
    code: str | None = None
    spends_attempt: bool = False
    retry_after: float | None = None
    pause_all: bool = False


def judge_submit_error(
    error: BaseException, *, attempts: int, max_attempts: int, resubmit_on_uncertain: bool
) -> Verdict:
    """The verdict for ``error`` raised by a submit; ``attempts`` were spent before this one."""
    message = _describe(error)
    spent = attempts + 1
    if isinstance(error, UpstreamRateLimited):
        return Verdict(Action.RATE_LIMITED, message, retry_after=error.retry_after)
    if isinstance(error, UpstreamTransient) and not error.sent:
        return Verdict(Action.UNREACHABLE, message)
    if isinstance(error, UpstreamAuthError):
        return Verdict(Action.AUTH, message, pause_all=True)
    if isinstance(error, UpstreamQuotaExceeded):
        return Verdict(
            Action.FAIL,
            f"the MetaChat account is out of API points; buy points, then retry ({message})",
            code=codes.UPSTREAM_QUOTA_EXCEEDED,
            spends_attempt=True,
            pause_all=True,
        )
    if isinstance(error, UpstreamRejected):
        return Verdict(Action.FAIL, message, code=codes.UPSTREAM_REJECTED, spends_attempt=True)
    if isinstance(error, UpstreamInvalidResponse):
        return Verdict(
            Action.FAIL, message, code=codes.INVALID_UPSTREAM_RESPONSE, spends_attempt=True
        )
    if isinstance(error, UpstreamTransient):
        if spent >= max_attempts:
            return Verdict(
                Action.FAIL,
                f"MetaChat kept failing ({spent} attempts); last: {message}",
                code=codes.UPSTREAM_UNAVAILABLE,
                spends_attempt=True,
            )
        return Verdict(Action.RETRY, message, spends_attempt=True)
    # A read timeout, a dropped connection, our own time budget, or anything unforeseen: the
    # request may have reached MetaChat and created a task we have no id for.
    if resubmit_on_uncertain and isinstance(error, UpstreamUncertain | TimeoutError):
        if spent >= max_attempts:
            return Verdict(
                Action.FAIL,
                f"no answer from MetaChat after {spent} attempts; last: {message}",
                code=codes.UPSTREAM_UNAVAILABLE,
                spends_attempt=True,
            )
        return Verdict(Action.RETRY, message, spends_attempt=True)
    return Verdict(
        Action.FAIL,
        f"MetaChat may have created this task but did not say so ({message}); "
        "not resubmitted to avoid paying twice",
        code=codes.SUBMIT_UNCERTAIN,
        spends_attempt=True,
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, UpstreamError):
        return error.message
    if isinstance(error, TimeoutError):
        return "no answer within the call's time budget"
    # Unforeseen errors are named but not quoted: their text was not written to be shown.
    return f"internal error {type(error).__name__}"
