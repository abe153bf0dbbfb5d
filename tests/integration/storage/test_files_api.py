"""`GET /v1/files/{id}`: the owner gets the bytes (or, on S3, a presigned URL that serves
them), anyone else a 404 exactly like a file that does not exist."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from api.app import create_app
from core.db import Database
from core.settings import Settings
from tests.support.api_client import ApiClient, api_clients
from tests.support.storage import PNG, archive_context, read_job, run, succeeded_job, upstream_files
from worker.archive import run_archive_pump

CDN = "https://cdn.example.test"


def _archived_file(db: Database, settings: Settings, owner: ApiClient) -> str:
    job_id = succeeded_job(db, owner.key.id, {"image_urls": [f"{CDN}/a.png"]})
    ctx = archive_context(db, settings, upstream_files({"/a.png": (200, "image/png", PNG)}))
    run(run_archive_pump(ctx))
    job = read_job(db, job_id)
    assert job.result is not None
    return str(job.result["files"][0]["id"])


def test_the_owner_downloads_a_stored_file_and_other_tenants_get_404(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings()
    with api_clients(create_app(settings, db), db) as clients:
        alice, bob, ops = clients.new("alice"), clients.new("bob"), clients.new("ops", admin=True)
        file_id = _archived_file(db, settings, alice)

        mine = alice.get(f"/v1/files/{file_id}", params={"redirect": "false"})
        theirs = bob.get(f"/v1/files/{file_id}", params={"redirect": "false"})
        missing = bob.get("/v1/files/file_01jzzzzzzzzzzzzzzzzzzzzzzz")
        admin = ops.get(f"/v1/files/{file_id}", params={"redirect": "false"})
        anonymous = clients.call("GET", f"/v1/files/{file_id}")

    assert mine.status_code == 200
    assert mine.content == PNG
    assert mine.headers["content-type"] == "image/png"
    assert mine.headers["content-length"] == str(len(PNG))
    assert theirs.status_code == 404
    assert theirs.json() == missing.json()
    assert admin.status_code == 200
    assert anonymous.status_code == 401


def test_on_s3_the_owner_is_redirected_to_a_presigned_url_that_serves_the_file(
    db: Database, storage_settings: Callable[..., Settings], store_overrides: dict[str, object]
) -> None:
    settings = storage_settings()
    with api_clients(create_app(settings, db), db) as clients:
        alice = clients.new("alice")
        file_id = _archived_file(db, settings, alice)
        answer = alice.get(f"/v1/files/{file_id}")

    if "storage_s3_endpoint" not in store_overrides:
        assert answer.status_code == 200  # the local store is always served by us
        assert answer.content == PNG
        return
    assert answer.status_code == 307
    location = answer.headers["location"]
    assert location.startswith(str(store_overrides["storage_s3_endpoint"]))
    fetched = httpx.get(location, timeout=10)
    assert fetched.status_code == 200
    assert fetched.content == PNG


def test_an_unknown_query_parameter_is_refused_with_a_pointer(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings()
    with api_clients(create_app(settings, db), db) as clients:
        answer = clients.new("alice").get("/v1/files/file_x", params={"redirct": "no"})
    assert answer.status_code == 422
    assert "redirct" in answer.text
