"""Webhook callbacks: where they may go, how they are signed, when they are retried, and the
outbox rows that carry them (docs/webhooks.md)."""

from core.webhooks.ssrf import (
    Destination,
    DestinationRefused,
    check_destination,
    resolve_destination,
)

__all__ = ["Destination", "DestinationRefused", "check_destination", "resolve_destination"]
