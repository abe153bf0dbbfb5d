"""Standard Webhooks headers, checked by the `standardwebhooks` library itself."""

from __future__ import annotations

import datetime as dt

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from core.keys import new_webhook_secret
from core.webhooks.signing import rotation_secrets, signature_headers

BODY = '{"data":{"id":"job_1"},"timestamp":"2026-12-01T00:00:00Z","type":"job.succeeded"}'


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_headers_verify_with_the_secret_and_carry_the_delivery_id_and_attempt_time() -> None:
    secret = new_webhook_secret()
    at = _now()
    headers = signature_headers("msg_1", BODY, [secret], at=at)
    assert Webhook(secret).verify(BODY, headers)["data"]["id"] == "job_1"
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    assert headers["webhook-signature"].startswith("v1,")


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h, b: ({**h, "webhook-id": "msg_2"}, b), id="other-id"),
        pytest.param(lambda h, b: (h, b.replace("job_1", "job_2")), id="other-body"),
        pytest.param(
            lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b),
            id="other-timestamp",
        ),
    ],
)
def test_any_change_to_id_body_or_timestamp_breaks_the_signature(tamper: object) -> None:
    secret = new_webhook_secret()
    headers = signature_headers("msg_1", BODY, [secret], at=_now())
    changed_headers, changed_body = tamper(headers, BODY)  # type: ignore[operator]
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(changed_body, changed_headers)


def test_a_wrong_secret_does_not_verify() -> None:
    headers = signature_headers("msg_1", BODY, [new_webhook_secret()], at=_now())
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(BODY, headers)


def test_signing_with_two_secrets_lets_either_verify() -> None:
    new, old = new_webhook_secret(), new_webhook_secret()
    headers = signature_headers("msg_1", BODY, [new, old], at=_now())
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        Webhook(secret).verify(BODY, headers)


def test_the_previous_secret_signs_only_during_the_rotation_window() -> None:
    now = _now()
    recent = now - dt.timedelta(hours=1)
    long_ago = now - dt.timedelta(days=2)
    assert rotation_secrets("new", "old", recent, now=now) == ["new", "old"]
    assert rotation_secrets("new", "old", long_ago, now=now) == ["new"]
    assert rotation_secrets("new", None, None, now=now) == ["new"]


def test_signing_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        signature_headers("msg_1", BODY, [], at=_now())
