"""Result paths: unknown-id quirks, numeric statuses, failures with reasons."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import SimHarness

REF = [{"url": "https://example.com/frame.png"}]


@pytest.mark.parametrize("result_path", ["midjourney/result", "image/result"])
def test_an_unknown_image_task_is_a_200_fail(sim: SimHarness, result_path: str) -> None:
    response = sim.poll(result_path, "f" * 32)
    assert response.status_code == 200
    assert response.json() == {"status": "Fail", "message": "任务不存在", "data": None}


def test_an_unknown_video_task_is_a_500_like_the_live_service(sim: SimHarness) -> None:
    response = sim.poll("video/result", "f" * 32)
    assert response.status_code == 500
    assert response.json() == {
        "status": "Fail",
        "message": "视频任务查询失败: Video task not found",
        "data": None,
    }


def test_numeric_status_mode_answers_10_20_30(make_sim: Any) -> None:
    sim = make_sim(numeric_status=True)
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"})
    statuses = {sim.task("midjourney/result", task_id)["status"]}
    for _ in range(100):
        sim.clock.advance(1.0)
        statuses.add(sim.task("midjourney/result", task_id)["status"])
    assert statuses == {10, 20, 30}


def test_numeric_status_mode_answers_40_for_a_failure(make_sim: Any) -> None:
    sim = make_sim("instant", numeric_status=True)
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "p sim:fail", "model": "mj-v7"})
    assert sim.task("midjourney/result", task_id)["status"] == 40


def test_the_fail_rate_fails_about_that_share_of_tasks_with_a_reason(make_sim: Any) -> None:
    sim = make_sim("instant", fail_rate=0.3, seed=7)
    outcomes = []
    for n in range(200):
        task_id = sim.submit_id("image/generate", {"prompt": f"p{n}", "model": "z-image-turbo"})
        outcomes.append(sim.task("image/result", task_id))

    failures = [d for d in outcomes if d["status"] == "failure"]
    assert 40 <= len(failures) <= 80
    assert {d["fail_reason"] for d in failures} <= {"内容审核未通过", "生成失败，请稍后重试"}  # noqa: RUF001
    assert all("total_points" not in d and "image_urls" not in d for d in failures)
    assert all(d["progress"] == 0 for d in failures)


def test_an_unreachable_reference_image_is_a_possible_failure_reason(make_sim: Any) -> None:
    sim = make_sim("instant", fail_rate=1.0)
    reasons = set()
    for n in range(30):
        body = {"prompt": f"p{n}", "model": "grok-imagine-video-1.5-preview", "images": REF}
        reasons.add(sim.task("video/result", sim.submit_id("video/generate", body))["fail_reason"])
    assert "参考图无法下载" in reasons


def test_a_failed_task_is_not_charged(make_sim: Any) -> None:
    sim = make_sim("instant", starting_balance=1000)
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "p sim:fail", "model": "mj-v7"})
    assert sim.task("midjourney/result", task_id)["fail_reason"] == "内容审核未通过"
    assert sim.stats()["balance"] == 1000


def test_a_failing_task_runs_for_a_while_before_it_fails(sim: SimHarness) -> None:
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "p sim:fail", "model": "mj-v7"})
    assert sim.task("midjourney/result", task_id)["status"] == "submitted"
    sim.finish()
    assert sim.task("midjourney/result", task_id)["status"] == "failure"


PRICES = [
    pytest.param("image/generate", {"prompt": "p", "model": "flux-kontext"}, 24, id="flux-one"),
    pytest.param(
        "image/generate",
        {"prompt": "p", "model": "flux-kontext", "params": {"num": 3}},
        72,
        id="flux-three",
    ),
    pytest.param(
        "video/generate",
        {"model": "grok-imagine-video-1.5-preview", "images": REF},
        1775,
        id="grok-video-default-5s",
    ),
    pytest.param(
        "video/generate",
        {"model": "grok-imagine-video-1.5-preview", "images": REF, "params": {"duration": 10}},
        3550,
        id="grok-video-10s",
    ),
    pytest.param("midjourney/imagine", {"prompt": "p", "model": "mj-v82"}, 50, id="mj-v82"),
    pytest.param("midjourney/describe", {"images": REF}, 10, id="describe"),
]


@pytest.mark.parametrize(("path", "body", "points"), PRICES)
def test_total_points_follow_the_price_table(
    make_sim: Any, path: str, body: dict[str, Any], points: int
) -> None:
    sim = make_sim("instant")
    result_path = path.split("/")[0] + "/result"
    assert sim.task(result_path, sim.submit_id(path, body))["total_points"] == points


def test_the_price_table_is_configurable(make_sim: Any) -> None:
    sim = make_sim("instant", points={"z-image-turbo": 3})
    task_id = sim.submit_id("image/generate", {"prompt": "p", "model": "z-image-turbo"})
    assert sim.task("image/result", task_id)["total_points"] == 3
