"""The legacy and forbidden profiles: the older paths and rules, and a disabled key."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, BASE, SimHarness

REF = [{"url": "https://example.com/frame.png"}]
MODE_REFUSAL = "params.mode: Expected 'pro' | 'max', received null"


def test_legacy_serves_flux_on_its_own_paths(make_sim: Any) -> None:
    sim: SimHarness = make_sim("legacy")
    body = {"model": "flux-2-pro", "prompt": "a mug", "params": {"mode": "pro"}}
    task_id = sim.submit_id("flux/generate", body)
    sim.finish()
    assert sim.task("flux/result", task_id)["status"] == "success"
    assert sim.poll("image/result", task_id).json()["message"] == "任务不存在"


def test_legacy_image_generate_refuses_flux_naming_the_models_it_serves(make_sim: Any) -> None:
    sim: SimHarness = make_sim("legacy")
    answer = sim.submit("image/generate", {"model": "flux-kontext", "prompt": "a mug"})
    assert answer["status"] == "Fail"
    assert answer["message"].startswith("Invalid enum value. Expected 'z-image-turbo' | ")
    assert "flux" not in answer["message"].split("received")[0]
    sim.submit_id("image/generate", {"model": "z-image-turbo", "prompt": "a mug"})


@pytest.mark.parametrize("params", [{}, {"mode": None}, {"num": 2}], ids=["none", "null", "other"])
def test_legacy_refuses_flux_without_a_mode_before_anything_else(
    make_sim: Any, params: dict[str, Any]
) -> None:
    sim: SimHarness = make_sim("legacy")
    answer = sim.submit("flux/generate", {"model": "flux-2-max", "prompt": "", "params": params})
    assert answer == {"status": "Fail", "message": MODE_REFUSAL, "data": None}
    assert sim.stats()["tasks_created"] == 0


def test_legacy_video_result_does_not_know_midjourney_clips(make_sim: Any) -> None:
    sim: SimHarness = make_sim("legacy")
    task_id = sim.submit_id("midjourney/video", {"model": "mj-video-v1", "images": REF})
    assert sim.poll("video/result", task_id).status_code == 500
    assert sim.poll("midjourney/result", task_id).json()["status"] == "Success"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "flux/generate"), ("GET", "flux/result/abc")],
    ids=["submit", "result"],
)
def test_the_default_profile_has_no_flux_paths(sim: SimHarness, method: str, path: str) -> None:
    response = sim.request(method, f"{BASE}/{path}", headers=AUTH, json={})
    assert response.status_code == 404
    assert response.json()["status"] == "not_found_error"


def test_the_default_profile_answers_midjourney_clips_on_both_result_paths(
    sim: SimHarness,
) -> None:
    task_id = sim.submit_id("midjourney/video", {"model": "mj-video-v1", "images": REF})
    assert sim.poll("video/result", task_id).json()["status"] == "Success"
    assert sim.poll("midjourney/result", task_id).json()["status"] == "Success"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "image/generate"),
        ("GET", "image/result/abc"),
        ("GET", "account/balance"),
    ],
    ids=["submit", "result", "balance"],
)
def test_forbidden_answers_403_to_a_valid_key_everywhere(
    make_sim: Any, method: str, path: str
) -> None:
    sim: SimHarness = make_sim("forbidden")
    response = sim.request(
        method, f"{BASE}/{path}", headers=AUTH, json={"model": "z-image-turbo", "prompt": "p"}
    )
    assert response.status_code == 403
    assert response.json() == {
        "status": "permission_error",
        "message": "API key is expired or disabled",
    }
    stats = sim.stats()
    assert (stats["forbidden"], stats["tasks_created"]) == (1, 0)


def test_forbidden_still_answers_401_to_a_missing_key(make_sim: Any) -> None:
    sim: SimHarness = make_sim("forbidden")
    assert sim.request("GET", f"{BASE}/account/balance").status_code == 401


def test_a_body_above_max_body_bytes_is_a_413_and_creates_nothing(make_sim: Any) -> None:
    sim: SimHarness = make_sim(max_body_bytes=1000)
    response = sim.request(
        "POST",
        f"{BASE}/image/generate",
        headers=AUTH,
        json={"model": "z-image-turbo", "prompt": "x" * 2000},
    )
    assert response.status_code == 413
    assert sim.stats()["tasks_created"] == 0
