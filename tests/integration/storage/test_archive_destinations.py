"""Result URLs come from upstream and what they name is served to the tenant, so the archive
fetches only from public addresses, checked on every hop of a redirect, unless
`ARCHIVE_ALLOW_PRIVATE` is set (development, where the simulator serves files on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from core.db import Database
from core.settings import Settings
from tests.support.core_rows import make_key
from tests.support.storage import PNG, archive_context, read_job, run, succeeded_job
from worker.archive import make_download_client, run_archive_pump

PUBLIC = "http://93.184.215.14"  # a public address: no name to resolve, and never reached here


def _archive(
    db: Database, settings: Settings, url: str, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[str, str | None]:
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [url]})
    http = make_download_client(settings, transport=httpx.MockTransport(handler))
    run(run_archive_pump(archive_context(db, settings, http=http)))
    job = read_job(db, job_id)
    return str(job.archive_state), job.archive_error


def _png(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "image/png"}, content=PNG)


def test_a_loopback_result_url_is_refused_before_any_request(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return _png(request)

    state, error = _archive(
        db, storage_settings(archive_allow_private=False), "http://127.0.0.1:9/a.png", handler
    )
    assert state == "failed"
    assert error is not None and "public addresses" in error
    assert asked == []


def test_a_redirect_to_the_metadata_address_is_refused_at_that_hop(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        return httpx.Response(302, headers={"location": "http://169.254.169.254/latest/meta-data"})

    state, error = _archive(
        db, storage_settings(archive_allow_private=False), f"{PUBLIC}/a.png", handler
    )
    assert state == "failed"
    assert error is not None and "169.254" in error  # the URL's own host, as upstream wrote it
    assert asked == [f"{PUBLIC}/a.png"]


def test_with_private_addresses_allowed_a_local_file_is_copied(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    state, error = _archive(
        db, storage_settings(archive_allow_private=True), "http://127.0.0.1:9/a.png", _png
    )
    assert (state, error) == ("done", None)
