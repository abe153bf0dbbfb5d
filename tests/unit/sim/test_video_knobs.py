"""Midjourney video knobs: motion, loop and a batch of clips, each clip a file and a price."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import SimHarness

REF = [{"url": "https://example.com/frame.png"}]
REFUSED = "绘图描述中存在错误的参数，请修改后重新提交。"  # noqa: RUF001


def _video(params: dict[str, Any]) -> dict[str, Any]:
    return {"model": "mj-video-v1", "images": REF, "params": params}


def test_a_batch_of_two_clips_lists_both_files_and_costs_two_clips(make_sim: Any) -> None:
    sim: SimHarness = make_sim("instant")
    task_id = sim.submit_id(
        "midjourney/video", _video({"motion": "high", "loop": True, "batch_size": 2})
    )
    data = sim.task("midjourney/result", task_id)
    assert data["video_url"] == data["video_urls"][0]
    assert [url.rsplit("/", 1)[1] for url in data["video_urls"]] == ["0.mp4", "1.mp4"]
    assert data["total_points"] == 2 * 600
    for url in data["video_urls"]:
        path = url.split("://", 1)[1].split("/", 1)[1]
        assert sim.request("GET", "/" + path).headers["content-type"] == "video/mp4"


def test_one_clip_answers_in_the_measured_shape(make_sim: Any) -> None:
    sim: SimHarness = make_sim("instant")
    task_id = sim.submit_id("midjourney/video", _video({"motion": "low"}))
    data = sim.task("midjourney/result", task_id)
    assert "video_urls" not in data
    assert data["total_points"] == 600


@pytest.mark.parametrize(
    "params",
    [{"batch_size": 3}, {"batch_size": True}, {"batch_size": 2.0}, {"motion": "medium"}],
    ids=["batch-of-three", "batch-true", "batch-float", "motion-unknown"],
)
def test_video_knobs_out_of_range_are_refused(sim: SimHarness, params: dict[str, Any]) -> None:
    answer = sim.submit("midjourney/video", _video(params))
    assert answer == {"status": "Fail", "message": REFUSED, "data": None}


@pytest.mark.parametrize(
    ("model", "size"),
    [("z-image-turbo", "2K"), ("doubao-seedream-5-0-260128", "4K")],
    ids=["z-image", "seedream"],
)
def test_size_presets_are_accepted(sim: SimHarness, model: str, size: str) -> None:
    sim.submit_id("image/generate", {"model": model, "prompt": "a mug", "params": {"size": size}})
