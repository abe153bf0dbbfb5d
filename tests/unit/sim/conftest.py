"""A simulator app on a manual clock, driven through httpx's in-memory ASGI transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from sim import ManualClock, SimConfig, Simulator, create_sim_app

AUTH = {"Authorization": "Bearer sk-test"}
BASE = "/open/v1"


class SimHarness:
    """One simulator plus a synchronous way to talk to it over ASGI."""

    def __init__(self, config: SimConfig) -> None:
        self.clock = ManualClock()
        self.app = create_sim_app(config, clock=self.clock)
        self.sim: Simulator = self.app.state.simulator

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def send() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://sim.test") as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(send())

    def submit(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
        response = self.request("POST", f"{BASE}/{path}", json=body, headers=headers or AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    def submit_id(self, path: str, body: dict[str, Any]) -> str:
        answer = self.submit(path, body)
        assert answer["status"] == "Success", answer
        return str(answer["data"]["id"])

    def poll(self, result_path: str, task_id: str) -> httpx.Response:
        return self.request("GET", f"{BASE}/{result_path}/{task_id}", headers=AUTH)

    def task(self, result_path: str, task_id: str) -> dict[str, Any]:
        response = self.poll(result_path, task_id)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def finish(self) -> None:
        """Move time past the longest possible task."""
        self.clock.advance(10_000)

    def stats(self) -> dict[str, Any]:
        response = self.request("GET", "/_sim/stats")
        assert response.status_code == 200
        stats: dict[str, Any] = response.json()
        return stats


@pytest.fixture
def make_sim() -> Callable[..., SimHarness]:
    """Build a harness from ``SimConfig`` fields (``profile=`` picks a named profile)."""

    def build(profile: str = "realistic", **overrides: Any) -> SimHarness:
        return SimHarness(SimConfig.for_profile(profile, **overrides))

    return build


@pytest.fixture
def sim(make_sim: Callable[..., SimHarness]) -> SimHarness:
    """A default simulator: realistic durations, no failures, no faults."""
    return make_sim()
