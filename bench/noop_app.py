"""A Celery app with one task that does nothing: the broker's and Celery's own ceiling.

Run with ``celery -A bench.noop_app worker -Q bench.noop -c 2``.
"""

from __future__ import annotations

import os

from celery import Celery

QUEUE = "bench.noop"

app = Celery("bench-noop", broker=os.environ.get("REF_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    task_default_queue=QUEUE,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.noop")  # type: ignore[untyped-decorator]
def noop() -> None:
    """Nothing at all."""
