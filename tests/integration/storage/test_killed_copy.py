"""A worker SIGKILLed in the middle of a copy: its lease runs out, another round copies the
file again, and the job ends with exactly one file row per output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import httpx

from core.db import Database
from core.files import files_of
from core.settings import Settings
from tests.support.core_rows import make_key
from tests.support.storage import (
    SlowFileServer,
    archive_context,
    read_job,
    run,
    stored_bytes,
    succeeded_job,
)
from tests.support.waiting import wait_until
from worker.archive import archive_round


def test_a_copy_killed_midway_completes_later_without_duplicate_rows(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    # a short copy budget keeps the dead worker's lease short
    settings = storage_settings(archive_timeout_seconds=2.0)
    key = make_key(db)
    upstream = SlowFileServer()
    try:
        job_id = succeeded_job(db, key.id, {"image_urls": [upstream.url]})
        dumped = settings.model_dump(mode="json", exclude_none=True)
        for name, value in settings:
            if hasattr(value, "get_secret_value"):
                dumped[name] = value.get_secret_value()
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.support.archive_child", json.dumps(dumped)],
            env={**os.environ},
        )
        try:
            assert upstream.half_sent.wait(timeout=60), "the child never started the copy"
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
        job = read_job(db, job_id)
        assert (job.archive_state, job.archive_lease_until is not None) == ("pending", True)

        upstream.release.set()
        ctx = archive_context(db, settings, http=httpx.AsyncClient(timeout=10))

        def archived() -> bool:
            run(archive_round(ctx))
            return read_job(db, job_id).archive_state == "done"

        # nothing is claimed until the killed worker's lease has run out
        wait_until(archived, timeout=60, interval=0.5, what="the copy to be redone")
    finally:
        upstream.close()

    with db.read_session() as session:
        rows = files_of(session, job_id)
        assert [row.output_index for row in rows] == [0]
        assert stored_bytes(ctx.store, rows[0].key) == SlowFileServer.BODY
        assert rows[0].size_bytes == len(SlowFileServer.BODY)
    assert upstream.requests == 2
