"""The same seed and the same requests give the same ids, timings, outcomes and faults."""

from __future__ import annotations

from typing import Any

from tests.unit.sim.conftest import AUTH, BASE

CHAOS = {
    "fail_rate": 0.3,
    "error_5xx_rate": 0.1,
    "rate_429_rate": 0.1,
    "malformed_rate": 0.1,
}


def _run(make_sim: Any, seed: int) -> list[Any]:
    sim = make_sim(seed=seed, **CHAOS)
    transcript: list[Any] = []
    for n in range(40):
        body = {"prompt": f"p{n}", "model": "flux-2-pro"}
        response = sim.request("POST", f"{BASE}/image/generate", json=body, headers=AUTH)
        transcript.append((response.status_code, response.text))
        sim.clock.advance(0.5)
    sim.finish()
    for task_id in sorted(sim.sim.book.tasks):
        response = sim.request("GET", f"{BASE}/image/result/{task_id}", headers=AUTH)
        transcript.append((response.status_code, response.text))
    return transcript


def test_the_same_seed_replays_the_same_run(make_sim: Any) -> None:
    assert _run(make_sim, seed=11) == _run(make_sim, seed=11)


def test_another_seed_gives_another_run(make_sim: Any) -> None:
    assert _run(make_sim, seed=11) != _run(make_sim, seed=12)


def test_how_often_a_task_is_polled_does_not_change_its_outcome(make_sim: Any) -> None:
    eager, lazy = make_sim(seed=5, fail_rate=0.5), make_sim(seed=5, fail_rate=0.5)
    ids = []
    for sim in (eager, lazy):
        ids.append(
            [
                sim.submit_id("image/generate", {"prompt": f"p{n}", "model": "flux-2-pro"})
                for n in range(10)
            ]
        )
    assert ids[0] == ids[1]
    for _ in range(30):
        eager.clock.advance(1.0)
        for task_id in ids[0]:
            eager.task("image/result", task_id)
    lazy.clock.advance(30.0)

    def outcome(sim: Any, task_id: str) -> Any:
        return sim.task("image/result", task_id)

    assert [outcome(eager, t) for t in ids[0]] == [outcome(lazy, t) for t in ids[1]]


def test_reset_starts_the_same_run_again(make_sim: Any) -> None:
    sim = make_sim(seed=2)
    first = sim.submit_id("image/generate", {"prompt": "p", "model": "flux-2-pro"})
    sim.request("POST", "/_sim/reset")
    assert sim.submit_id("image/generate", {"prompt": "p", "model": "flux-2-pro"}) == first
    assert sim.stats()["tasks_created"] == 1
