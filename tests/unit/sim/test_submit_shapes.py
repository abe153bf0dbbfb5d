"""Every submit path answers the upstream envelope; its task ends with the family's result field."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import SimHarness

REF = [{"url": "https://example.com/ref.png"}]

FRESH_CASES = [
    pytest.param(
        "midjourney/imagine",
        {"prompt": "a lighthouse", "model": "mj-v7", "params": {"aspect": "16:9", "stylize": 250}},
        "midjourney/result",
        "image_url",
        id="mj-imagine",
    ),
    pytest.param(
        "midjourney/imagine",
        {"prompt": "a fox", "model": "niji-7"},
        "midjourney/result",
        "image_url",
        id="niji-imagine",
    ),
    pytest.param(
        "midjourney/describe", {"images": REF}, "midjourney/result", "prompts", id="mj-describe"
    ),
    pytest.param(
        "midjourney/blend",
        {"images": REF * 3, "model": "mj-v61"},
        "midjourney/result",
        "image_url",
        id="mj-blend",
    ),
    pytest.param(
        "midjourney/video",
        {"prompt": "slow pan", "model": "mj-video-v1", "images": REF},
        "midjourney/result",
        "video_url",
        id="mj-video",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "mug", "model": "flux-kontext", "params": {"mode": "pro", "aspect": "1:1"}},
        "image/result",
        "image_urls",
        id="flux-kontext",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "mug", "model": "z-image-turbo", "params": {"aspect": "3:2"}},
        "image/result",
        "image_urls",
        id="z-image",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "mug", "model": "doubao-seedream-4-5-251128", "params": {"num": 2}},
        "image/result",
        "image_urls",
        id="seedream",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "mug", "model": "grok-imagine-image-quality", "params": {"num": 1}},
        "image/result",
        "image_urls",
        id="grok-image",
    ),
    pytest.param(
        "video/generate",
        {
            "prompt": "a cat asleep",
            "model": "grok-imagine-video-1.5-preview",
            "params": {"duration": 5, "ratio": "adaptive", "resolution": "720p"},
            "images": REF,
        },
        "video/result",
        "video_url",
        id="grok-video",
    ),
]


@pytest.mark.parametrize(("path", "body", "result_path", "field"), FRESH_CASES)
def test_a_fresh_submit_ends_with_its_family_result_field(
    sim: SimHarness, path: str, body: dict[str, Any], result_path: str, field: str
) -> None:
    answer = sim.submit(path, body)
    assert answer["status"] == "Success"
    assert answer["message"] in {"任务创建成功", "视频生成任务创建成功"}
    assert set(answer["data"]) == {"id", "prompt", "model"}
    task_id = answer["data"]["id"]

    sim.finish()
    data = sim.task(result_path, task_id)

    assert data["id"] == task_id
    assert data["status"] == "success"
    assert data["progress"] == 100
    assert isinstance(data["total_points"], int) and data["total_points"] > 0
    assert data[field]
    if field == "image_urls":
        assert len(data[field]) == body.get("params", {}).get("num", 1)
    if field == "prompts":
        assert len(data["prompts"]) == 4


def _finished_grid(sim: SimHarness) -> str:
    grid = sim.submit_id("midjourney/imagine", {"prompt": "a lighthouse", "model": "mj-v7"})
    sim.finish()
    return grid


def _finished_single(sim: SimHarness) -> str:
    tile = sim.submit_id("midjourney/separate", {"id": _finished_grid(sim), "index": 3})
    sim.finish()
    return tile


FOLLOW_UPS = [
    pytest.param("separate", {"index": 2}, _finished_grid, id="separate"),
    pytest.param("variation", {"index": 4}, _finished_grid, id="variation"),
    pytest.param("reroll", {}, _finished_grid, id="reroll"),
    pytest.param("upscale", {"type": "creative"}, _finished_single, id="upscale"),
    pytest.param("vary", {"type": "strong"}, _finished_single, id="vary"),
    pytest.param("zoom", {"scale": 1.5}, _finished_single, id="zoom"),
    pytest.param("pan", {"direction": "left"}, _finished_single, id="pan"),
]


@pytest.mark.parametrize(("action", "arg", "make_source"), FOLLOW_UPS)
def test_a_midjourney_follow_up_makes_a_new_task_with_one_image(
    sim: SimHarness, action: str, arg: dict[str, Any], make_source: Any
) -> None:
    source = make_source(sim)
    follow_up = sim.submit_id(f"midjourney/{action}", {"id": source, **arg})
    assert follow_up != source

    sim.finish()
    data = sim.task("midjourney/result", follow_up)

    assert data["status"] == "success"
    assert data["image_url"].endswith(f"/oss/{follow_up}/0.png")
    assert data["prompt"] == "a lighthouse"


def test_result_urls_are_absolute_on_the_sims_own_host(sim: SimHarness) -> None:
    task_id = sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    sim.finish()
    assert sim.task("image/result", task_id)["image_urls"] == [
        f"http://sim.test/oss/{task_id}/0.png"
    ]


def test_a_configured_public_base_replaces_the_host_in_result_urls(make_sim: Any) -> None:
    sim = make_sim(public_base_url="https://files.example.test/")
    task_id = sim.submit_id(
        "video/generate", {"model": "grok-imagine-video-1.5-preview", "images": REF}
    )
    sim.finish()
    assert sim.task("video/result", task_id)["video_url"] == (
        f"https://files.example.test/oss/{task_id}/0.mp4"
    )


def test_a_midjourney_clip_is_also_answered_on_the_video_result_path(sim: SimHarness) -> None:
    clip = sim.submit_id("midjourney/video", {"model": "mj-video-v1", "images": REF})
    sim.finish()
    assert sim.task("video/result", clip)["video_url"].endswith(".mp4")


def test_an_image_task_is_unknown_on_another_familys_result_path(sim: SimHarness) -> None:
    task_id = sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    answer = sim.poll("midjourney/result", task_id).json()
    assert answer == {"status": "Fail", "message": "任务不存在", "data": None}
