"""Nudges: tell the workers that rows are due now instead of at the next beat tick.

A nudge is only a hint (the database is the truth): losing one delays work by one tick, a
duplicate one claims nothing. It is sent after the commit that made the rows due, never inside
the transaction, so a worker can never look for rows that are not yet visible.
"""

from __future__ import annotations

import logging
import threading

from celery import Celery

log = logging.getLogger(__name__)

SUBMIT_TICK = "mcjobs.tick.submit"
POLL_TICK = "mcjobs.tick.poll"
MAINTENANCE_TICK = "mcjobs.tick.maintenance"
DELIVER_TICK = "mcjobs.tick.deliver"
ARCHIVE_TICK = "mcjobs.tick.archive"
TICK_QUEUE = "mcjobs.ticks"

_senders: dict[str, Celery] = {}
_lock = threading.Lock()


def _sender(broker_url: str) -> Celery:
    with _lock:
        app = _senders.get(broker_url)
        if app is None:
            app = Celery("mcjobs-nudge", broker=broker_url, set_as_current=False)
            app.conf.broker_connection_retry_on_startup = False
            app.conf.broker_transport_options = {"max_retries": 1}
            _senders[broker_url] = app
        return app


def nudge(broker_url: str, task_name: str) -> bool:
    """Send one tick message; never raises (a nudge that cannot be sent is just a later tick)."""
    try:
        _sender(broker_url).send_task(
            task_name, queue=TICK_QUEUE, expires=30, retry=False, ignore_result=True
        )
    except Exception as exc:  # a broker outage must not fail the request that committed work
        log.warning("nudge %s not sent: %s", task_name, type(exc).__name__)
        return False
    return True
