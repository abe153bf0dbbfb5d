"""The dashboard's upstream page: `mcjobs upstream check` run from the browser.

The check sends about fifty free requests to MetaChat, so it runs only when an operator asks
(a POST), never on page load; the last report is kept by this API process (on the app's state)
and shown until the next run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from core.submission import get_catalogue
from core.tables import utcnow
from metachat.probe import UpstreamReport, check_configured


@dataclass(frozen=True)
class CheckedUpstream:
    """A report and when it was made."""

    at: dt.datetime
    report: UpstreamReport


class LastCheck:
    """The latest report of this process; one check at a time."""

    def __init__(self) -> None:
        self._latest: CheckedUpstream | None = None
        self._running = threading.Lock()

    @property
    def latest(self) -> CheckedUpstream | None:
        return self._latest

    def run(self, settings: Settings) -> CheckedUpstream | None:
        """Run the check now (blocking: call it from a worker thread); None when one is
        already running."""
        if not self._running.acquire(blocking=False):
            return None
        try:
            report = asyncio.run(_check(settings))
            self._latest = CheckedUpstream(utcnow(), report)
            return self._latest
        finally:
            self._running.release()


async def _check(settings: Settings) -> UpstreamReport:
    api_key, app_id = settings.metachat_api_key, settings.metachat_app_id
    return await check_configured(
        get_catalogue(settings.metachat_catalogue_overrides),
        base_url=settings.metachat_base_url,
        llm_base_url=settings.metachat_llm_base_url,
        api_key=api_key.get_secret_value() if api_key is not None else None,
        app_id=app_id.get_secret_value() if app_id is not None else None,
        overrides=settings.metachat_catalogue_overrides,
        connect_timeout=settings.metachat_connect_timeout,
        read_timeout=settings.metachat_read_timeout,
    )


def last_check_of(state: Any) -> LastCheck:
    """The app's `LastCheck` (``app.state``), made on first use."""
    holder = getattr(state, "upstream_check", None)
    if not isinstance(holder, LastCheck):
        holder = LastCheck()
        state.upstream_check = holder
    return holder
