"""What a hostile storage host or API answer cannot do to a download directory: name a file
``.sh`` (or anything but an image or video), or plant a spreadsheet formula in manifest.csv."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.download import FORMULA_STARTS, download_results, file_stem, manifest_cell


def _job(n: int, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"job_{n:03d}",
        "status": "succeeded",
        "model": "flux-2-pro",
        "action": "generate",
        "result": {"image_urls": [url], "video_url": None},
        "cost_points": 24,
        "error": None,
        "metadata": {},
        **extra,
    }


def _serving(content_type: str) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=b"#!/bin/sh\necho hi\n", headers={"content-type": content_type}
        )
    )


def _saved_names(transport: httpx.MockTransport, url: str, directory: Path) -> list[str]:
    with httpx.Client(transport=transport) as client:
        [entry] = download_results([_job(1, url)], directory, client=client)
    return entry.files


@pytest.mark.parametrize(
    ("url", "content_type", "name"),
    [
        pytest.param("https://oss.test/a", "image/png", "job_001.png", id="png"),
        pytest.param("https://oss.test/a", "image/jpeg; q=1", "job_001.jpg", id="jpeg-params"),
        pytest.param("https://oss.test/a", "IMAGE/WEBP", "job_001.webp", id="case"),
        pytest.param("https://oss.test/a", "video/quicktime", "job_001.mov", id="mov"),
        pytest.param("https://oss.test/a", "video/webm", "job_001.webm", id="webm"),
        pytest.param("https://oss.test/a.gif", "application/octet-stream", "job_001.gif", id="url"),
        pytest.param("https://oss.test/a", "text/x-shellscript", "job_001.bin", id="shell"),
        pytest.param("https://oss.test/a", "application/x-sh", "job_001.bin", id="x-sh"),
        pytest.param("https://oss.test/a.sh", "text/x-shellscript", "job_001.bin", id="sh-url"),
        pytest.param("https://oss.test/a.txt", "text/html", "job_001.bin", id="html"),
        pytest.param("https://oss.test/a.exe", "", "job_001.bin", id="exe-url"),
        pytest.param(
            "https://oss.test/a.png", "application/x-msdownload", "job_001.png", id="url-wins"
        ),
    ],
)
def test_a_saved_file_only_ever_gets_an_image_or_video_extension(
    tmp_path: Path, url: str, content_type: str, name: str
) -> None:
    assert _saved_names(_serving(content_type), url, tmp_path) == [name]
    assert not list(tmp_path.glob("*.sh"))


@pytest.mark.parametrize(
    ("sku", "stem"),
    [
        pytest.param("-rf", "rf", id="leading-dash"),
        pytest.param(".bashrc", "bashrc", id="leading-dot"),
        pytest.param("--_-x", "x", id="dashes-and-underscores"),
    ],
)
def test_a_file_name_never_starts_like_an_option_or_a_hidden_file(sku: str, stem: str) -> None:
    assert file_stem("{sku}", {"id": "job_1", "metadata": {"sku": sku}}, 1) == stem


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_text_a_spreadsheet_would_run_is_quoted(start: str) -> None:
    assert manifest_cell(start + "HYPERLINK(1)") == "'" + start + "HYPERLINK(1)"


@pytest.mark.parametrize("value", ["job_001", "upstream_failed: =1+1", 7, "", "{}"])
def test_ordinary_cells_are_written_as_they_are(value: object) -> None:
    assert manifest_cell(value) == value


def test_the_manifest_has_no_cell_that_starts_a_formula(tmp_path: Path) -> None:
    hostile = _job(
        1,
        "https://oss.test/a.png",
        status="failed",
        result=None,
        model="=cmd|' /C calc'!A0",
        action="+SUM(1,2)",
        error={"code": "@upstream", "message": '=HYPERLINK("https://evil.test")'},
    )
    with httpx.Client(transport=_serving("image/png")) as client:
        download_results([hostile], tmp_path, client=client)

    with (tmp_path / "manifest.csv").open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell.startswith(FORMULA_STARTS)]
    assert rows[0]["model"] == "'=cmd|' /C calc'!A0"
    assert rows[0]["error"].startswith("'@upstream: =HYPERLINK")


def test_every_clip_of_a_midjourney_video_batch_is_downloaded_once(tmp_path: Path) -> None:
    clips = [f"https://oss.test/clip{n}.mp4" for n in range(4)]
    job = _job(1, "unused", model="mj-video-v1", action="video")
    job["result"] = {"image_urls": [], "video_url": clips[0], "video_urls": clips}
    transport = httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=request.url.path.encode(), headers={"content-type": "video/mp4"}
        )
    )
    with httpx.Client(transport=transport) as client:
        [entry] = download_results([job], tmp_path, client=client)

    assert len(entry.files) == 4
    saved = sorted((tmp_path / name).read_bytes() for name in entry.files)
    assert saved == sorted(f"/clip{n}.mp4".encode() for n in range(4))
