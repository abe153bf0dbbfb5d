"""Submits MetaChat turns down: HTTP 200 ``Fail`` with its message, and no task, no charge."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, BASE, SimHarness

PARAMS = "绘图描述中存在错误的参数，请修改后重新提交。"  # noqa: RUF001
QUOTA = "You exceeded your current API quota. Please purchase the API points."
REF = {"url": "https://example.com/frame.png"}
VIDEO = "grok-imagine-video-1.5-preview"


def test_an_unknown_model_is_refused_with_the_list_of_allowed_ones(sim: SimHarness) -> None:
    answer = sim.submit("image/generate", {"prompt": "mug", "model": "gpt-image-1"})
    assert answer["status"] == "Fail"
    assert answer["data"] is None
    assert answer["message"].startswith(
        "Invalid enum value. Expected 'flux-kontext' | 'flux-2-pro'"
    )
    assert answer["message"].endswith("'grok-imagine-image-quality', received 'gpt-image-1'")


def test_a_midjourney_model_is_unknown_to_the_generic_image_path(sim: SimHarness) -> None:
    answer = sim.submit("image/generate", {"prompt": "mug", "model": "mj-v7"})
    assert "received 'mj-v7'" in answer["message"]


BAD_BODIES = [
    pytest.param("midjourney/imagine", {"model": "mj-v7"}, id="imagine-without-prompt"),
    pytest.param(
        "midjourney/imagine",
        {"prompt": "p", "model": "mj-v7", "params": {"stylize": 5000}},
        id="stylize-out-of-range",
    ),
    pytest.param(
        "midjourney/imagine",
        {"prompt": "p", "model": "mj-v7", "params": {"colour": "red"}},
        id="unknown-param",
    ),
    pytest.param(
        "midjourney/imagine", {"prompt": "x" * 5001, "model": "mj-v7"}, id="prompt-too-long"
    ),
    pytest.param(
        "image/generate",
        {"prompt": "p", "model": "flux-2-pro", "params": {"num": 5}},
        id="num-above-four",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "p", "model": "flux-2-pro", "params": {"aspect": "5:4"}},
        id="flux-aspect-not-listed",
    ),
    pytest.param(
        "image/generate",
        {"prompt": "p", "model": "doubao-seedream-5-0-260128", "params": {"aspect": "1:1"}},
        id="seedream-has-no-aspect",
    ),
    pytest.param("video/generate", {"prompt": "p", "model": VIDEO}, id="video-without-first-frame"),
    pytest.param(
        "video/generate", {"prompt": "p", "model": VIDEO, "images": [REF, REF]}, id="two-frames"
    ),
    pytest.param(
        "video/generate",
        {"model": VIDEO, "images": [REF], "params": {"duration": 16}},
        id="duration-above-15",
    ),
    pytest.param(
        "video/generate",
        {"model": VIDEO, "images": [REF], "params": {"ratio": "21:9"}},
        id="ratio-21-9",
    ),
    pytest.param(
        "video/generate",
        {"model": VIDEO, "images": [REF], "params": {"resolution": "1080p"}},
        id="resolution-1080p",
    ),
    pytest.param(
        "video/generate",
        {"model": VIDEO, "images": [{"b64": "data:image/png;base64,AAAA"}]},
        id="video-frame-not-a-url",
    ),
    pytest.param("midjourney/video", {"model": "mj-video-v1"}, id="mj-video-without-image"),
    pytest.param("midjourney/describe", {"images": []}, id="describe-without-image"),
    pytest.param("midjourney/blend", {"images": [REF]}, id="blend-of-one"),
    pytest.param("midjourney/blend", {"images": [REF] * 6}, id="blend-of-six"),
    pytest.param("midjourney/imagine", {"prompt": "p sim:reject", "model": "mj-v7"}, id="marker"),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES)
def test_bad_params_are_refused_with_the_drawing_description_message(
    sim: SimHarness, path: str, body: dict[str, Any]
) -> None:
    assert sim.submit(path, body) == {"status": "Fail", "message": PARAMS, "data": None}
    assert sim.stats()["tasks_created"] == 0


def test_a_body_that_is_not_json_is_refused(sim: SimHarness) -> None:
    response = sim.request(
        "POST",
        f"{BASE}/image/generate",
        content=b"{nope",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.json()["message"] == PARAMS


def test_unchecked_params_pass_when_strict_params_is_off(make_sim: Any) -> None:
    sim = make_sim(strict_params=False)
    body = {"prompt": "p", "model": "flux-2-pro", "params": {"guidance": 3}}
    assert sim.submit("image/generate", body)["status"] == "Success"


FOLLOW_UP_SOURCES = [
    pytest.param("unknown", "原任务不存在", id="unknown-source"),
    pytest.param("running", "原任务尚未完成，请稍后再试", id="unfinished-source"),  # noqa: RUF001
    pytest.param("failed", "原任务不支持该操作", id="failed-source"),
    pytest.param("image", "原任务不存在", id="non-midjourney-source"),
]


@pytest.mark.parametrize(("source", "message"), FOLLOW_UP_SOURCES)
def test_a_follow_up_needs_a_finished_midjourney_source(
    sim: SimHarness, source: str, message: str
) -> None:
    ids = {
        "unknown": "0" * 32,
        "running": sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"}),
        "image": sim.submit_id("image/generate", {"prompt": "p", "model": "flux-2-pro"}),
    }
    failing = sim.submit_id("midjourney/imagine", {"prompt": "p sim:fail", "model": "mj-v7"})
    sim.clock.advance(100.0)
    ids["failed"] = failing
    ids["running"] = sim.submit_id("midjourney/imagine", {"prompt": "q", "model": "mj-v7"})

    answer = sim.submit("midjourney/separate", {"id": ids[source], "index": 1})

    assert answer == {"status": "Fail", "message": message, "data": None}


def test_upscale_wants_a_separated_tile_not_a_grid(sim: SimHarness) -> None:
    grid = sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"})
    sim.finish()
    assert sim.submit("midjourney/upscale", {"id": grid, "type": "subtle"})["status"] == "Fail"


def test_any_finished_image_will_do_when_strict_sources_is_off(make_sim: Any) -> None:
    sim = make_sim(strict_sources=False)
    grid = sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"})
    sim.finish()
    assert sim.submit("midjourney/upscale", {"id": grid, "type": "subtle"})["status"] == "Success"


@pytest.mark.parametrize(
    ("action", "body"),
    [
        pytest.param("separate", {"index": 5}, id="separate-index-5"),
        pytest.param("variation", {}, id="variation-without-index"),
        pytest.param("upscale", {"type": "huge"}, id="upscale-type"),
        pytest.param("zoom", {"scale": 3}, id="zoom-scale"),
        pytest.param("pan", {"direction": "sideways"}, id="pan-direction"),
    ],
)
def test_a_follow_up_with_a_bad_argument_is_refused(
    sim: SimHarness, action: str, body: dict[str, Any]
) -> None:
    grid = sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"})
    sim.finish()
    answer = sim.submit(f"midjourney/{action}", {"id": grid, **body})
    assert answer == {"status": "Fail", "message": PARAMS, "data": None}


def test_submits_are_refused_once_the_balance_runs_out(make_sim: Any) -> None:
    sim = make_sim("instant", starting_balance=100)
    body = {"prompt": "p", "model": "mj-v7"}  # 40 points each

    assert sim.submit_id("midjourney/imagine", body)
    assert sim.submit_id("midjourney/imagine", body)
    assert sim.submit("midjourney/imagine", body) == {
        "status": "Fail",
        "message": QUOTA,
        "data": None,
    }
    assert sim.stats()["balance"] == 20
    assert sim.stats()["tasks_created"] == 2


def test_points_held_by_running_tasks_count_against_the_balance(make_sim: Any) -> None:
    sim = make_sim(starting_balance=100)
    body = {"prompt": "p", "model": "mj-v7"}
    sim.submit_id("midjourney/imagine", body)
    sim.submit_id("midjourney/imagine", body)
    assert sim.submit("midjourney/imagine", body)["message"] == QUOTA
    sim.finish()
    assert sim.stats()["balance"] == 20


def test_setting_the_balance_to_zero_at_runtime_refuses_the_next_submit(sim: SimHarness) -> None:
    assert sim.request("POST", "/_sim/config", json={"balance": 0}).status_code == 200
    assert (
        sim.submit("image/generate", {"prompt": "p", "model": "z-image-turbo"})["message"] == QUOTA
    )
