"""Commands for API users (`submit`, `batch`, `jobs`): they talk to the API over HTTP."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Coming with the submission API."""
