"""Standard Webhooks signatures, made by the `standardwebhooks` library (never by hand).

Headers of one attempt: `webhook-id` (the delivery id, the receiver's idempotency key, the same on
every retry), `webhook-timestamp` (unix seconds of this attempt) and `webhook-signature`: one
`v1,<base64>` entry per secret, space-separated, so that during a secret rotation receivers that
still hold the previous secret keep verifying.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from standardwebhooks import Webhook

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"

DEFAULT_ROTATION_OVERLAP = dt.timedelta(hours=24)


def rotation_secrets(
    current: str,
    previous: str | None,
    rotated_at: dt.datetime | None,
    *,
    now: dt.datetime,
    overlap: dt.timedelta = DEFAULT_ROTATION_OVERLAP,
) -> list[str]:
    """The secrets to sign with: the key's current one, plus the previous one while the
    rotation window (`overlap` after `rotated_at`) lasts."""
    secrets = [current]
    if previous and previous != current and rotated_at is not None and now < rotated_at + overlap:
        secrets.append(previous)
    return secrets


def signature_headers(
    delivery_id: str, payload: str, secrets: Sequence[str], *, at: dt.datetime
) -> dict[str, str]:
    """The three Standard Webhooks headers for sending `payload` (the exact body text) at `at`."""
    if not secrets:
        raise ValueError("a webhook needs at least one signing secret")
    # The library floors to whole seconds; the header must carry the same number.
    at = at.astimezone(dt.UTC).replace(microsecond=0)
    signatures = [Webhook(secret).sign(delivery_id, at, payload) for secret in secrets]
    return {
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(int(at.timestamp())),
        SIGNATURE_HEADER: " ".join(signatures),
    }
