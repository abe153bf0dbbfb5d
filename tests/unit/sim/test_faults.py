"""Injected faults: what the client sees, and whether the upstream created (and charges) a task."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, BASE

BODY = {"prompt": "a fox", "model": "z-image-turbo"}


def _submit(sim: Any) -> Any:
    return sim.request("POST", f"{BASE}/image/generate", json=BODY, headers=AUTH)


def test_a_5xx_fault_answers_500_json_or_502_html_and_creates_nothing(make_sim: Any) -> None:
    sim = make_sim(error_5xx_rate=1.0)
    answers = [_submit(sim) for _ in range(20)]

    kinds = {(a.status_code, a.headers["content-type"].split(";")[0]) for a in answers}
    assert kinds == {(500, "application/json"), (502, "text/html")}
    json_500 = next(a for a in answers if a.status_code == 500)
    assert json_500.json() == {"status": "internal_error", "message": "Internal Server Error"}
    stats = sim.stats()
    assert (stats["tasks_created"], stats["errors_5xx"], stats["faults_injected"]) == (0, 20, 20)


def test_a_random_429_carries_the_configured_retry_after(make_sim: Any) -> None:
    sim = make_sim(rate_429_rate=1.0, retry_after_seconds=7)
    response = _submit(sim)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert sim.stats()["tasks_created"] == 0


def test_a_slow_answer_arrives_slow_seconds_late_but_intact(make_sim: Any) -> None:
    sim = make_sim(slow_rate=1.0, slow_seconds=4.0)
    before = sim.clock.now()
    response = _submit(sim)
    assert sim.clock.now() - before == pytest.approx(4.0)
    assert response.json()["status"] == "Success"


def test_a_read_timeout_records_the_task_but_answers_too_late(make_sim: Any) -> None:
    sim = make_sim(read_timeout_rate=1.0, hang_seconds=30.0)
    before = sim.clock.now()
    _submit(sim)
    assert sim.clock.now() - before == pytest.approx(30.0)
    stats = sim.stats()
    assert stats["tasks_created"] == 1
    assert stats["submits_by_prompt"] == {"a fox": 1}
    assert stats["faults"] == {"read_timeout": 1}


def test_a_malformed_answer_hides_the_id_of_a_task_that_exists(make_sim: Any) -> None:
    sim = make_sim(malformed_rate=1.0)
    answers = [_submit(sim) for _ in range(20)]

    not_json = [a for a in answers if a.headers["content-type"].startswith("text/html")]
    missing_id = [a.json() for a in answers if a.headers["content-type"] == "application/json"]
    assert not_json and missing_id
    assert all(a.status_code == 200 for a in answers)
    assert all(body["status"] == "Success" and "id" not in body["data"] for body in missing_id)
    assert sim.stats()["tasks_created"] == 20


def test_faults_can_target_polls_only(make_sim: Any) -> None:
    sim = make_sim(error_5xx_rate=1.0, fault_on_submit=False)
    task_id = _submit(sim).json()["data"]["id"]
    assert sim.request("GET", f"{BASE}/image/result/{task_id}", headers=AUTH).status_code >= 500


def test_faults_can_target_submits_only(make_sim: Any) -> None:
    sim = make_sim("instant")
    task_id = _submit(sim).json()["data"]["id"]
    sim.request("POST", "/_sim/config", json={"error_5xx_rate": 1.0, "fault_on_poll": False})
    assert sim.request("GET", f"{BASE}/image/result/{task_id}", headers=AUTH).status_code == 200
    assert _submit(sim).status_code >= 500


def test_a_fault_rate_set_at_runtime_applies_to_the_next_request(make_sim: Any) -> None:
    sim = make_sim()
    assert _submit(sim).status_code == 200
    response = sim.request("POST", "/_sim/config", json={"rate_429_rate": 1.0})
    assert response.json()["rate_429_rate"] == 1.0
    assert _submit(sim).status_code == 429
    sim.request("POST", "/_sim/config", json={"rate_429_rate": 0.0})
    assert _submit(sim).status_code == 200


def test_fault_rates_mix_in_about_their_proportions(make_sim: Any) -> None:
    sim = make_sim("instant", error_5xx_rate=0.2, rate_429_rate=0.2, seed=3)
    codes = [_submit(sim).status_code for _ in range(300)]
    assert 30 <= sum(c >= 500 for c in codes) <= 90
    assert 30 <= codes.count(429) <= 90
    assert sim.stats()["tasks_created"] == codes.count(200)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"error_5xx_rate": 1.5}, id="rate-above-one"),
        pytest.param({"no_such_knob": 1}, id="unknown-field"),
        pytest.param({"balance": "lots"}, id="balance-not-int"),
    ],
)
def test_an_invalid_config_change_is_refused_and_changes_nothing(
    make_sim: Any, change: dict[str, Any]
) -> None:
    sim = make_sim()
    before = sim.request("GET", "/_sim/config").json()
    assert sim.request("POST", "/_sim/config", json=change).status_code == 422
    assert sim.request("GET", "/_sim/config").json() == before
