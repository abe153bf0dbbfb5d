"""The retry rules of a failed submit, as one table."""

from __future__ import annotations

import pytest

from metachat.errors import (
    UpstreamAuthError,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTransient,
    UpstreamUncertain,
)
from worker.verdicts import Action, judge_submit_error

CASES = [
    pytest.param(
        UpstreamTransient("refused", sent=False),
        0,
        False,
        Action.UNREACHABLE,
        None,
        False,
        id="nothing-sent-retries-without-spending-an-attempt",
    ),
    pytest.param(
        UpstreamRateLimited("429", retry_after=3.0),
        5,
        False,
        Action.RATE_LIMITED,
        None,
        False,
        id="429-retries-without-spending-an-attempt",
    ),
    pytest.param(
        UpstreamTransient("500", sent=True, http_status=500),
        0,
        False,
        Action.RETRY,
        None,
        True,
        id="5xx-retries-and-spends-an-attempt",
    ),
    pytest.param(
        UpstreamTransient("502", sent=True, http_status=502),
        5,
        False,
        Action.FAIL,
        "upstream_unavailable",
        True,
        id="5xx-on-the-last-attempt-fails-as-unavailable",
    ),
    pytest.param(
        UpstreamRejected("bad params"),
        0,
        False,
        Action.FAIL,
        "upstream_rejected",
        True,
        id="fail-envelope-is-permanent",
    ),
    pytest.param(
        UpstreamQuotaExceeded("no points"),
        0,
        False,
        Action.FAIL,
        "upstream_quota_exceeded",
        True,
        id="out-of-points-fails-the-job",
    ),
    pytest.param(
        UpstreamQuotaExceeded("You exceeded your current API quota.", http_status=429),
        0,
        False,
        Action.FAIL,
        "upstream_quota_exceeded",
        True,
        id="out-of-points-as-a-429-fails-rather-than-waiting",
    ),
    pytest.param(
        UpstreamAuthError("bad key", kind="authentication_error"),
        0,
        False,
        Action.AUTH,
        None,
        False,
        id="auth-error-pauses-instead-of-burning-the-job",
    ),
    pytest.param(
        UpstreamUncertain("read timeout"),
        0,
        False,
        Action.FAIL,
        "submit_uncertain",
        True,
        id="read-timeout-after-send-is-not-resubmitted",
    ),
    pytest.param(
        TimeoutError(),
        0,
        False,
        Action.FAIL,
        "submit_uncertain",
        True,
        id="our-own-time-budget-is-uncertain-too",
    ),
    pytest.param(
        UpstreamUncertain("read timeout"),
        0,
        True,
        Action.RETRY,
        None,
        True,
        id="read-timeout-is-resubmitted-when-the-operator-allows-it",
    ),
    pytest.param(
        UpstreamInvalidResponse("no data.id"),
        0,
        False,
        Action.FAIL,
        "invalid_upstream_response",
        True,
        id="unreadable-answer-fails-without-resubmitting",
    ),
    pytest.param(
        KeyError("boom"),
        0,
        False,
        Action.FAIL,
        "submit_uncertain",
        True,
        id="an-unforeseen-error-is-treated-as-maybe-sent",
    ),
]


@pytest.mark.parametrize(("error", "attempts", "resubmit", "action", "code", "spends"), CASES)
def test_submit_error_verdicts(
    error: BaseException,
    attempts: int,
    resubmit: bool,
    action: Action,
    code: str | None,
    spends: bool,
) -> None:
    verdict = judge_submit_error(
        error, attempts=attempts, max_attempts=6, resubmit_on_uncertain=resubmit
    )
    assert (verdict.action, verdict.code, verdict.spends_attempt) == (action, code, spends)


def test_an_unforeseen_error_is_named_but_its_text_is_not_shown() -> None:
    verdict = judge_submit_error(
        RuntimeError("secret-ish detail"), attempts=0, max_attempts=6, resubmit_on_uncertain=False
    )
    assert "RuntimeError" in verdict.message
    assert "secret-ish" not in verdict.message


def test_the_upstream_message_is_kept_for_a_rejection() -> None:
    verdict = judge_submit_error(
        UpstreamRejected("绘图描述中存在错误的参数"),
        attempts=0,
        max_attempts=6,
        resubmit_on_uncertain=False,
    )
    assert verdict.message == "绘图描述中存在错误的参数"


def test_out_of_points_pauses_every_submit_and_says_what_to_do() -> None:
    verdict = judge_submit_error(
        UpstreamQuotaExceeded("You exceeded your current API quota.", http_status=429),
        attempts=0,
        max_attempts=6,
        resubmit_on_uncertain=False,
    )
    assert verdict.pause_all
    assert verdict.retry_after is None
    assert "out of API points" in verdict.message
    assert "You exceeded your current API quota." in verdict.message
