"""Downloads: readable, unique file names; a manifest row per job; no API key sent along."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.download import download_results, file_stem, validate_template


def _job(n: int, status: str = "succeeded", **extra: Any) -> dict[str, Any]:
    urls = [f"https://oss.test/{n}/a.png"] if status == "succeeded" else []
    return {
        "id": f"job_{n:03d}",
        "status": status,
        "model": "flux-2-pro",
        "action": "generate",
        "result": {"image_urls": urls, "video_url": None} if urls else None,
        "cost_points": 60 if status == "succeeded" else None,
        "error": None if status == "succeeded" else {"code": "upstream_rejected", "message": "no"},
        "metadata": {"sku": f"S-{n}"},
        **extra,
    }


class Storage:
    """A fake object store that records what it was asked for."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if "broken" in request.url.path:
            return httpx.Response(500)
        kind = "video/mp4" if request.url.path.endswith("clip") else "image/png"
        return httpx.Response(
            200, content=b"bytes of " + request.url.path.encode(), headers={"content-type": kind}
        )


@pytest.fixture
def storage() -> Storage:
    return Storage()


def _download(storage: Storage, jobs: list[dict[str, Any]], directory: Path, **kw: Any) -> Any:
    with httpx.Client(transport=httpx.MockTransport(storage)) as client:
        return download_results(jobs, directory, client=client, **kw)


@pytest.mark.parametrize(
    ("template", "stem"),
    [
        pytest.param("{id}", "job_007", id="id"),
        pytest.param("{sku}-{n}", "S-7-3", id="metadata-and-place"),
        pytest.param("{missing}", "job_007", id="unknown-field-falls-back"),
        pytest.param("{sku}/../{model}", "S-7_.._flux-2-pro", id="path-characters-made-safe"),
    ],
)
def test_file_names_come_from_the_template(template: str, stem: str) -> None:
    assert file_stem(template, _job(7), 3) == stem


@pytest.mark.parametrize("template", ["{", "{0}", "{sku!x}"])
def test_a_broken_template_is_refused(template: str) -> None:
    with pytest.raises(ValueError):
        validate_template(template)


def test_every_file_is_saved_and_the_manifest_has_a_row_per_job(
    storage: Storage, tmp_path: Path
) -> None:
    jobs = [
        _job(1),
        _job(2, "failed"),
        _job(3, result={"image_urls": [], "video_url": "https://oss.test/clip"}),
    ]

    _download(storage, jobs, tmp_path, template="{sku}")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["S-1.png", "S-3.mp4", "manifest.csv"]
    with (tmp_path / "manifest.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["job_id"], r["status"], r["files"]) for r in rows] == [
        ("job_001", "succeeded", "S-1.png"),
        ("job_002", "failed", ""),
        ("job_003", "succeeded", "S-3.mp4"),
    ]
    assert rows[1]["error"] == "upstream_rejected: no"
    assert all("authorization" not in r.headers for r in storage.requests)


def test_several_images_get_numbered_and_same_names_are_kept_apart(
    storage: Storage, tmp_path: Path
) -> None:
    grid = _job(1, result={"image_urls": ["https://oss.test/1/a.png", "https://oss.test/1/b.png"]})
    twin = _job(2, metadata={"sku": "S-1"})

    entries = _download(storage, [grid, twin], tmp_path, template="{sku}")

    assert entries[0].files == ["S-1_1.png", "S-1_2.png"]
    assert entries[1].files == ["S-1-job_002.png"]


def test_a_second_run_keeps_what_is_already_there(storage: Storage, tmp_path: Path) -> None:
    _download(storage, [_job(1)], tmp_path)
    storage.requests.clear()

    entries = _download(storage, [_job(1)], tmp_path)

    assert storage.requests == []
    assert entries[0].files == ["job_001.png"]


def test_a_failed_download_is_recorded_not_fatal(storage: Storage, tmp_path: Path) -> None:
    broken = _job(1, result={"image_urls": ["https://oss.test/broken.png"]})

    [entry] = _download(storage, [broken], tmp_path)

    assert entry.files == []
    assert entry.error is not None and "download failed" in entry.error
    assert "download failed" in (tmp_path / "manifest.csv").read_text()


def _archived(n: int, file_ids: list[str | None]) -> dict[str, Any]:
    job = _job(n)
    urls = [f"https://oss.test/{n}/{i}.png" for i in range(len(file_ids))]
    job["result"] = {
        "image_urls": urls,
        "video_url": None,
        "files": [
            {"id": file_id, "index": i, "url": f"https://api.test/v1/files/{file_id}"}
            for i, file_id in enumerate(file_ids)
            if file_id is not None
        ],
    }
    return job


def test_archived_copies_come_from_our_api_with_the_key_and_the_rest_from_upstream(
    storage: Storage, tmp_path: Path
) -> None:
    ours: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        ours.append(request)
        if request.url.path.endswith("file_gone"):
            return httpx.Response(404)
        return httpx.Response(200, content=b"our copy", headers={"content-type": "image/png"})

    job = _archived(1, ["file_a", None, "file_gone"])
    with httpx.Client(
        transport=httpx.MockTransport(api),
        base_url="https://api.test",
        headers={"Authorization": "Bearer mk_secret"},
    ) as stored:
        (entry,) = _download(storage, [job], tmp_path, stored=stored)

    assert entry.error is None
    assert {r.url.path for r in ours} == {"/v1/files/file_a", "/v1/files/file_gone"}
    assert all(r.headers["authorization"] == "Bearer mk_secret" for r in ours)
    assert (tmp_path / "job_001_1.png").read_bytes() == b"our copy"
    # no stored copy, or ours is gone: the upstream link, without the key
    assert sorted(r.url.path for r in storage.requests) == ["/1/1.png", "/1/2.png"]
    assert all("authorization" not in r.headers for r in storage.requests)
