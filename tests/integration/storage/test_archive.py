"""The archive pump against the local store and a real S3-compatible server: outputs copied
with their file rows, refusals and retries that never fail the job, webhooks that carry our
URLs, pruning with the jobs."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable

from sqlalchemy import func, select

from api.routes.dashboard.view import WINDOWS, build_view
from core.db import Database
from core.files import files_of, record_file
from core.maintenance import prune
from core.metrics import DatabaseCollector, build_registry, render
from core.settings import Settings
from core.tables import SUCCEEDED, Job, ResultFile, utcnow
from core.transitions import transition
from core.webhooks.deliveries import claim_due_deliveries
from tests.support.core_rows import make_job, make_key
from tests.support.storage import (
    MP4,
    PNG,
    archive_context,
    read_job,
    run,
    stored_bytes,
    succeeded_job,
    upstream_files,
)
from worker.archive import archive_round, prune_files, run_archive_pump
from worker.deliver import archive_wait

CDN = "https://cdn.example.test"


def _file_rows(db: Database, job_id: str) -> list[ResultFile]:
    with db.read_session() as session:
        rows = files_of(session, job_id)
        for row in rows:
            session.expunge(row)
        return rows


def test_outputs_are_copied_with_one_row_each_and_listed_in_the_result(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings()
    key = make_key(db)
    result = {"image_urls": [f"{CDN}/a.png"], "video_url": f"{CDN}/b.mp4"}
    job_id = succeeded_job(db, key.id, result)
    ctx = archive_context(
        db,
        settings,
        upstream_files({"/a.png": (200, "image/png", PNG), "/b.mp4": (200, "video/mp4", MP4)}),
    )

    report = run(run_archive_pump(ctx))

    assert (report.copied, report.refused, report.failed) == (2, 0, 0)
    job = read_job(db, job_id)
    assert job.status == SUCCEEDED
    assert job.archive_state == "done"
    rows = _file_rows(db, job_id)
    assert [(r.output_index, r.content_type) for r in rows] == [(0, "image/png"), (1, "video/mp4")]
    image, video = rows
    assert (image.width, image.height) == (32, 32)
    assert (video.width, video.height) == (None, None)
    assert image.sha256 == hashlib.sha256(PNG).hexdigest()
    assert image.size_bytes == len(PNG)
    assert image.source_url == f"{CDN}/a.png"
    assert stored_bytes(ctx.store, image.key) == PNG
    assert stored_bytes(ctx.store, video.key) == MP4
    assert job.result is not None
    listed = job.result["files"]
    assert [f["url"] for f in listed] == [
        f"https://files.example.test/v1/files/{image.id}",
        f"https://files.example.test/v1/files/{video.id}",
    ]
    # the upstream URLs stay where they were
    assert job.result["image_urls"] == [f"{CDN}/a.png"]


def test_a_gone_link_a_wrong_type_and_an_oversized_file_are_refused_without_failing_the_job(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(archive_max_bytes=len(PNG) + 10)
    key = make_key(db)
    urls = [f"{CDN}/ok.png", f"{CDN}/gone.png", f"{CDN}/page.png", f"{CDN}/big.png"]
    job_id = succeeded_job(db, key.id, {"image_urls": urls})
    ctx = archive_context(
        db,
        settings,
        upstream_files(
            {
                "/ok.png": (200, "image/png", PNG),
                "/page.png": (200, "text/html; charset=utf-8", b"<html>login</html>"),
                "/big.png": (200, "image/png", PNG * 3),
            }
        ),
    )

    report = run(run_archive_pump(ctx))

    assert (report.copied, report.refused, report.failed) == (1, 3, 0)
    job = read_job(db, job_id)
    assert job.status == SUCCEEDED
    assert job.archive_state == "failed"
    assert job.archive_error is not None
    assert "output 1: upstream answered 404" in job.archive_error
    assert "output 2: content type text/html is not kept" in job.archive_error
    assert "output 3:" in job.archive_error and "cap" in job.archive_error
    rows = _file_rows(db, job_id)
    assert [r.output_index for r in rows] == [0]
    assert job.result is not None and len(job.result["files"]) == 1
    # nothing of the oversized body is left in the store
    assert not run(ctx.store.exists(f"{job_id}/3.png"))


def test_a_failed_copy_is_retried_and_completes_later(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings()
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png", f"{CDN}/b.png"]})
    answers = {"/a.png": (200, "image/png", PNG), "/b.png": (503, "text/plain", b"busy")}
    ctx = archive_context(db, settings, upstream_files(answers))

    first = run(archive_round(ctx))
    assert (first.copied, first.failed) == (1, 1)
    job = read_job(db, job_id)
    assert (job.archive_state, job.archive_attempts) == ("pending", 1)
    assert job.archive_error == "output 1: upstream answered 503"

    answers["/b.png"] = (200, "image/png", PNG)
    second = run(archive_round(ctx))

    # only the missing output is fetched again
    assert (second.copied, second.failed) == (1, 0)
    job = read_job(db, job_id)
    assert job.archive_state == "done"
    assert [r.output_index for r in _file_rows(db, job_id)] == [0, 1]


def test_retries_are_bounded_then_the_failure_stays_visible(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(archive_max_attempts=2)
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png"]})
    ctx = archive_context(db, settings, upstream_files({"/a.png": (500, "text/plain", b"oops")}))

    run(archive_round(ctx))
    run(archive_round(ctx))
    third = run(archive_round(ctx))

    assert third.jobs == 0
    job = read_job(db, job_id)
    assert (job.status, job.archive_state, job.archive_attempts) == (SUCCEEDED, "failed", 2)


def test_a_replayed_copy_keeps_one_row_and_its_id(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png"]})
    fields = {
        "job_id": job_id,
        "index": 0,
        "key": f"{job_id}/0.png",
        "sha256": "0" * 64,
        "size": 10,
        "content_type": "image/png",
        "width": 1,
        "height": 1,
        "source_url": f"{CDN}/a.png",
    }
    with db.session() as session:
        first = record_file(session, **fields)
    with db.session() as session:
        second = record_file(session, **{**fields, "sha256": "1" * 64, "size": 11})

    assert first == second
    rows = _file_rows(db, job_id)
    assert len(rows) == 1
    assert (rows[0].sha256, rows[0].size_bytes) == ("1" * 64, 11)


def test_the_webhook_waits_for_the_copies_and_carries_our_urls(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(archive_webhook_wait_seconds=60)
    key = make_key(db)
    job_id = make_job(db, key.id, status="running", webhook_url="https://hooks.example.test/x")
    with db.session() as session:
        transition(
            session,
            job_id,
            from_status="running",
            to_status=SUCCEEDED,
            reason="upstream_succeeded",
            values={"result": {"image_urls": [f"{CDN}/a.png"], "video_url": None}},
        )

    def claim() -> list[str]:
        with db.session() as session:
            claimed = claim_due_deliveries(
                session,
                owner="test",
                now=utcnow(),
                lease_seconds=30,
                limit=10,
                archive_wait=archive_wait(settings),
            )
            return [delivery.payload for delivery in claimed]

    assert claim() == []  # held while the copy is pending
    ctx = archive_context(db, settings, upstream_files({"/a.png": (200, "image/png", PNG)}))
    run(run_archive_pump(ctx))

    (payload,) = claim()
    data = json.loads(payload)["data"]
    (row,) = _file_rows(db, job_id)
    assert data["result"]["image_urls"] == [f"{CDN}/a.png"]
    assert data["result"]["files"][0]["url"] == f"https://files.example.test/v1/files/{row.id}"
    assert data["archive"]["state"] == "done"


def test_a_held_webhook_goes_out_after_the_wait_even_if_the_copy_is_not_done(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(archive_webhook_wait_seconds=5)
    key = make_key(db)
    job_id = make_job(db, key.id, status="running", webhook_url="https://hooks.example.test/x")
    with db.session() as session:
        transition(
            session,
            job_id,
            from_status="running",
            to_status=SUCCEEDED,
            reason="upstream_succeeded",
            values={"result": {"image_urls": [f"{CDN}/a.png"]}},
        )
    later = utcnow() + dt.timedelta(seconds=6)
    with db.session() as session:
        claimed = claim_due_deliveries(
            session,
            owner="test",
            now=later,
            lease_seconds=30,
            limit=10,
            archive_wait=archive_wait(settings),
        )
    assert len(claimed) == 1


def test_files_are_pruned_with_their_jobs_objects_first(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(retention_days=1)
    key = make_key(db)
    long_ago = utcnow() - dt.timedelta(days=2)
    old = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png"]})
    fresh = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png"]})
    ctx = archive_context(db, settings, upstream_files({"/a.png": (200, "image/png", PNG)}))
    run(run_archive_pump(ctx))
    with db.session() as session:
        session.get_one(Job, old).finished_at = long_ago
    (old_row,) = _file_rows(db, old)

    # the job is not pruned while it still has a stored file
    with db.session() as session:
        prune(session, now=utcnow(), settings=settings)
    assert _file_rows(db, old)

    assert run(prune_files(ctx)) == 1
    assert not run(ctx.store.exists(old_row.key))
    with db.session() as session:
        prune(session, now=utcnow(), settings=settings)
    with db.read_session() as session:
        assert session.get(Job, old) is None
        assert session.get(Job, fresh) is not None
        assert session.scalar(select(func.count()).select_from(ResultFile)) == 1


def test_archiving_off_settles_jobs_as_skipped(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings(archive_enabled=False)
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/a.png"]})
    run(run_archive_pump(archive_context(db, settings)))
    assert read_job(db, job_id).archive_state == "skipped"
    assert archive_wait(settings) is None


def test_a_failed_archive_shows_in_metrics_and_on_the_dashboard(
    db: Database, storage_settings: Callable[..., Settings]
) -> None:
    settings = storage_settings()
    key = make_key(db)
    job_id = succeeded_job(db, key.id, {"image_urls": [f"{CDN}/gone.png"]})
    run(run_archive_pump(archive_context(db, settings)))

    scrape = render(build_registry(DatabaseCollector(db, cache_seconds=0))).decode()
    view = build_view(db, window=WINDOWS["1h"], api_key_id=None, balance=None)

    assert 'mcjobs_archive_jobs{state="failed"} 1.0' in scrape
    assert view.archive.get("failed") == 1
    assert read_job(db, job_id).status == SUCCEEDED
