"""Tasks move submitted → in_progress → success over simulated time, at each model's pace."""

from __future__ import annotations

import statistics
from typing import Any

import pytest

from sim import SimConfig
from sim.catalogue import SUBMIT_ROUTES
from sim.tasks import TaskSpec, plan_task
from tests.unit.sim.conftest import SimHarness


def test_a_task_rises_through_the_statuses_with_growing_progress(sim: SimHarness) -> None:
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "a lighthouse", "model": "mj-v7"})
    seen: list[tuple[str, int]] = []
    for _ in range(200):
        data = sim.task("midjourney/result", task_id)
        seen.append((data["status"], data["progress"]))
        if data["status"] == "success":
            break
        sim.clock.advance(1.0)

    statuses = [s for s, _ in seen]
    assert statuses[0] == "submitted"
    assert "in_progress" in statuses
    assert statuses[-1] == "success"
    order = {"submitted": 0, "in_progress": 1, "success": 2}
    assert [order[s] for s in statuses] == sorted(order[s] for s in statuses)
    running = [p for s, p in seen if s == "in_progress"]
    assert running == sorted(running)
    assert all(0 < p < 100 for p in running)
    assert len(set(running)) > 5


def test_nothing_changes_while_the_clock_stands_still(sim: SimHarness) -> None:
    task_id = sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    sim.clock.advance(6.0)
    first = sim.task("image/result", task_id)
    assert [sim.task("image/result", task_id) for _ in range(3)] == [first] * 3


MEDIANS = [
    pytest.param("image/generate", "z-image-turbo", 6.0, id="z-image"),
    pytest.param("image/generate", "flux-kontext", 12.0, id="flux"),
    pytest.param("image/generate", "doubao-seedream-5-0-260128", 15.0, id="seedream"),
    pytest.param("image/generate", "grok-imagine-image-2.0", 10.0, id="grok-image"),
    pytest.param("midjourney/imagine", "mj-v82", 40.0, id="mj-imagine"),
    pytest.param("midjourney/describe", "mj-v7", 8.0, id="mj-describe"),
    pytest.param("midjourney/video", "mj-video-v1", 150.0, id="mj-video"),
    pytest.param("video/generate", "grok-imagine-video-1.5-preview", 100.0, id="grok-video"),
]


@pytest.mark.parametrize(("path", "model", "median"), MEDIANS)
@pytest.mark.parametrize("time_scale", [1.0, 0.02], ids=["real-time", "fast"])
def test_durations_centre_on_the_models_typical_time_times_the_scale(
    path: str, model: str, median: float, time_scale: float
) -> None:
    config = SimConfig(time_scale=time_scale)
    spec = TaskSpec(route=SUBMIT_ROUTES[path], model=model, prompt="p")
    durations = [plan_task(spec, config, n, 0.0).finished_at for n in range(1, 301)]

    assert statistics.median(durations) == pytest.approx(median * time_scale, rel=0.1)
    assert min(durations) > 0.3 * median * time_scale
    assert max(durations) < 3.0 * median * time_scale


def test_midjourney_transforms_take_their_own_typical_time(sim: SimHarness) -> None:
    config = SimConfig()
    spec = TaskSpec(route=SUBMIT_ROUTES["midjourney/upscale"], model="mj-v7", prompt="p")
    durations = [plan_task(spec, config, n, 0.0).finished_at for n in range(1, 301)]
    assert statistics.median(durations) == pytest.approx(25.0, rel=0.1)


@pytest.mark.parametrize(
    ("path", "body", "result_path"),
    [
        pytest.param(
            "midjourney/imagine", {"prompt": "p", "model": "mj-v7"}, "midjourney/result", id="mj"
        ),
        pytest.param(
            "video/generate",
            {
                "model": "grok-imagine-video-1.5-preview",
                "images": [{"url": "https://e.test/a.png"}],
            },
            "video/result",
            id="video",
        ),
    ],
)
def test_the_instant_profile_finishes_every_task_on_submit(
    make_sim: Any, path: str, body: dict[str, Any], result_path: str
) -> None:
    sim = make_sim("instant")
    task_id = sim.submit_id(path, body)
    data = sim.task(result_path, task_id)
    assert (data["status"], data["progress"]) == ("success", 100)


def test_the_fast_profile_finishes_a_midjourney_grid_within_seconds(make_sim: Any) -> None:
    sim = make_sim("fast")
    task_id = sim.submit_id("midjourney/imagine", {"prompt": "p", "model": "mj-v7"})
    sim.clock.advance(3.0)
    assert sim.task("midjourney/result", task_id)["status"] == "success"


@pytest.mark.parametrize("profile", ["realistic", "default", "fast", "instant", "flaky"])
def test_every_named_profile_builds_a_config(profile: str) -> None:
    assert SimConfig.for_profile(profile).seed == 0


def test_an_unknown_profile_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="known: default, fast, flaky, forbidden, instant, legacy, realistic"
    ):
        SimConfig.for_profile("turbo")
