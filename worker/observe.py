"""What the pumps tell Prometheus (`core.metrics`): one closed vocabulary of outcomes."""

from __future__ import annotations

from core import metrics
from metachat.errors import (
    UpstreamAuthError,
    UpstreamInvalidResponse,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUncertain,
)
from metachat.openai import SyncAnswer
from metachat.tasks import UpstreamTask


def outcome_label(outcome: object) -> str:
    """``accepted`` (a submit's task id), a task's state, or the kind of failure."""
    if isinstance(outcome, str):
        return "accepted"
    if isinstance(outcome, SyncAnswer):
        return "succeeded"
    if isinstance(outcome, UpstreamTask):
        return outcome.status if outcome.is_terminal else "running"
    if isinstance(outcome, UpstreamRateLimited):
        return "rate_limited"
    if isinstance(outcome, UpstreamTransient):
        return "transient" if outcome.sent else "unreachable"
    if isinstance(outcome, UpstreamAuthError):
        return "auth"
    if isinstance(outcome, UpstreamTaskNotFound):
        return "not_found"
    if isinstance(outcome, UpstreamRejected):
        return "rejected"
    if isinstance(outcome, UpstreamUncertain | TimeoutError):
        return "uncertain"
    if isinstance(outcome, UpstreamInvalidResponse):
        return "invalid"
    return "error"


def upstream_call(call: str, provider: str, outcome: object, seconds: float) -> None:
    """Count one submit or poll (``call``) and its time."""
    label = outcome_label(outcome)
    if call == "submit":
        metrics.record_submit(provider, label, seconds)
    else:
        metrics.record_poll(provider, label, seconds)
    if label == "rate_limited":
        metrics.record_rate_limited(provider)
