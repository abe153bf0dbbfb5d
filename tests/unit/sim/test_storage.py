"""Result files: served without auth from the object-storage route, valid enough to open."""

from __future__ import annotations

import struct
import zlib
from typing import Any

from tests.unit.sim.conftest import AUTH, SimHarness

REF = [{"url": "https://example.com/frame.png"}]


def test_an_image_url_serves_a_valid_png_without_a_key(make_sim: Any) -> None:
    sim = make_sim("instant")
    task_id = sim.submit_id(
        "image/generate", {"prompt": "p", "model": "flux-2-pro", "params": {"num": 2}}
    )
    urls = sim.task("image/result", task_id)["image_urls"]

    bodies = [sim.request("GET", url) for url in urls]

    assert [b.status_code for b in bodies] == [200, 200]
    assert all(b.headers["content-type"] == "image/png" for b in bodies)
    png = bodies[0].content
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (8, 8)
    length = struct.unpack(">I", png[33:37])[0]
    assert zlib.decompress(png[41 : 41 + length])
    assert bodies[0].content != bodies[1].content
    assert sim.stats()["files_served"] == 2


def test_a_video_url_serves_an_mp4_shaped_file(make_sim: Any) -> None:
    sim = make_sim("instant")
    task_id = sim.submit_id(
        "video/generate", {"model": "grok-imagine-video-1.5-preview", "images": REF}
    )
    clip = sim.request("GET", sim.task("video/result", task_id)["video_url"])
    assert clip.headers["content-type"] == "video/mp4"
    assert clip.content[4:8] == b"ftyp"


def test_no_file_exists_before_the_task_succeeds(sim: SimHarness) -> None:
    task_id = sim.submit_id("image/generate", {"prompt": "p", "model": "flux-2-pro"})
    assert sim.request("GET", f"/oss/{task_id}/0.png").status_code == 404
    assert sim.request("GET", f"/oss/{task_id}/7.png", headers=AUTH).status_code == 404


def test_urls_expire_after_the_configured_lifetime(make_sim: Any) -> None:
    sim = make_sim("instant", url_ttl_seconds=60)
    task_id = sim.submit_id("image/generate", {"prompt": "p", "model": "flux-2-pro"})
    url = sim.task("image/result", task_id)["image_urls"][0]
    assert sim.request("GET", url).status_code == 200
    sim.clock.advance(61)
    expired = sim.request("GET", url)
    assert expired.status_code == 403
    assert b"AccessDenied" in expired.content
