"""The account (balance, usage records) and the counters tests use to catch double submits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, BASE, SimHarness


def _account(sim: SimHarness, path: str, **query: Any) -> Any:
    response = sim.request("GET", f"{BASE}/{path}", params=query, headers=AUTH)
    assert response.status_code == 200
    return response.json()


def test_the_balance_drops_by_each_succeeded_tasks_points_when_it_succeeds(
    make_sim: Any,
) -> None:
    sim = make_sim(starting_balance=1000)
    task_id = sim.submit_id("image/generate", {"prompt": "p", "model": "flux-kontext"})
    assert _account(sim, "account/balance")["data"] == {"balance": 1000}
    sim.finish()
    assert sim.task("image/result", task_id)["total_points"] == 24
    assert _account(sim, "account/balance") == {
        "status": "Success",
        "message": "查询成功",
        "data": {"balance": 976},
    }


def test_usage_lists_charges_newest_first_in_pages(make_sim: Any) -> None:
    sim = make_sim("instant")
    ids = [
        sim.submit_id("image/generate", {"prompt": f"p{n}", "model": "z-image-turbo"})
        for n in range(5)
    ]
    sim.submit_id("midjourney/imagine", {"prompt": "sim:fail", "model": "mj-v7"})

    first = _account(sim, "account/usage", page=1, size=2)["data"]
    third = _account(sim, "account/usage", page=3, size=2)["data"]

    assert first["total"] == 5
    assert [r["task_id"] for r in first["records"]] == [ids[4], ids[3]]
    assert [r["task_id"] for r in third["records"]] == [ids[0]]
    assert first["records"][0] == {
        "task_id": ids[4],
        "model": "z-image-turbo",
        "points": 8,
        "created_at": "2026-01-01T00:00:00Z",
    }


@pytest.mark.parametrize("query", [{"page": 0}, {"size": 101}, {"page": "x"}], ids=str)
def test_bad_usage_paging_is_refused(sim: SimHarness, query: dict[str, Any]) -> None:
    assert _account(sim, "account/usage", **query)["status"] == "Fail"


def test_the_account_paths_are_configurable(make_sim: Any) -> None:
    sim = make_sim(balance_path="points/left", usage_path="points/history")
    assert _account(sim, "points/left")["data"]["balance"] > 0
    assert _account(sim, "points/history")["data"]["total"] == 0


def test_counters_show_submits_by_prompt_model_and_path(sim: SimHarness) -> None:
    sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    sim.submit_id("image/generate", {"prompt": "cup", "model": "flux-2-pro"})
    grid = sim.submit_id("midjourney/imagine", {"prompt": "fox", "model": "mj-v7"})
    sim.poll("image/result", "nope")
    sim.finish()
    sim.submit_id("midjourney/separate", {"id": grid, "index": 2})
    sim.submit("image/generate", {"prompt": "x", "model": "nope"})

    stats = sim.stats()

    assert stats["submits_by_prompt"] == {
        "mug": 1,
        "cup": 1,
        "fox": 1,
        f"separate {grid} 2": 1,
    }
    assert stats["duplicates"] == {}
    assert stats["submits_by_model"] == {"flux-2-pro": 2, "mj-v7": 2}
    assert stats["submits_by_path"] == {
        "image/generate": 2,
        "midjourney/imagine": 1,
        "midjourney/separate": 1,
    }
    assert (stats["tasks_created"], stats["submit_requests"]) == (4, 5)
    assert (stats["polls"], stats["polls_unknown_id"]) == (1, 1)
    assert stats["tasks"]["submitted"] == 1
    assert stats["points_spent"] == 30 + 30 + 40


def test_the_same_prompt_twice_shows_up_as_a_duplicate(sim: SimHarness) -> None:
    for _ in range(2):
        sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    assert sim.stats()["duplicates"] == {"mug": 2}


def test_a_task_view_shows_how_often_it_was_polled(sim: SimHarness) -> None:
    task_id = sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    for _ in range(3):
        sim.poll("image/result", task_id)
    view = sim.request("GET", f"/_sim/tasks/{task_id}").json()
    assert (view["polls"], view["model"], view["path"]) == (3, "flux-2-pro", "image/generate")
    assert sim.request("GET", "/_sim/tasks/nope").status_code == 404


def test_reset_forgets_tasks_counters_and_spending(make_sim: Any) -> None:
    sim = make_sim("instant", starting_balance=500)
    task_id = sim.submit_id("image/generate", {"prompt": "mug", "model": "flux-2-pro"})
    sim.request("POST", "/_sim/reset")
    stats = sim.stats()
    assert (stats["tasks_created"], stats["balance"], stats["submits_by_prompt"]) == (0, 500, {})
    assert sim.poll("image/result", task_id).json()["message"] == "任务不存在"
