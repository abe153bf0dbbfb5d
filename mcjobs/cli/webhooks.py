"""`mcjobs webhooks …`: the delivery log, redelivery and a local signature-checking receiver."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Coming with webhook delivery."""
