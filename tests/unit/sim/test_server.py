"""The simulator over real HTTP on 127.0.0.1: the thread server and ``python -m sim``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from sim import SimConfig, SimServer

AUTH = {"Authorization": "Bearer sk-test"}


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """A client that talks to 127.0.0.1 directly even when the environment names a proxy."""
    with httpx.Client(trust_env=False) as client:
        yield client


def test_a_sim_server_answers_on_its_own_port_until_stopped(http: httpx.Client) -> None:
    with SimServer(SimConfig.for_profile("instant")) as sim:
        assert sim.base_url == f"http://127.0.0.1:{sim.port}/open/v1"
        body = {"prompt": "mug", "model": "flux-2-pro"}
        task_id = http.post(f"{sim.base_url}/image/generate", json=body, headers=AUTH).json()[
            "data"
        ]["id"]
        data = http.get(f"{sim.base_url}/image/result/{task_id}", headers=AUTH).json()["data"]
        assert data["image_urls"][0].startswith(f"{sim.root_url}/oss/{task_id}/")
        assert http.get(data["image_urls"][0]).status_code == 200
        assert sim.stats()["submits_by_prompt"] == {"mug": 1}
        port = sim.port
    with pytest.raises(httpx.ConnectError):
        http.get(f"http://127.0.0.1:{port}/_sim/health", timeout=1.0)


def test_a_hung_submit_times_the_client_out_yet_the_task_exists(http: httpx.Client) -> None:
    with SimServer(SimConfig.for_profile("fast", read_timeout_rate=1.0, hang_seconds=5)) as sim:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            http.post(
                f"{sim.base_url}/image/generate",
                json={"prompt": "lost", "model": "z-image-turbo"},
                headers=AUTH,
                timeout=0.3,
            )
        assert sim.stats()["submits_by_prompt"] == {"lost": 1}
    assert time.monotonic() - started < 4.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_the_module_entry_point_serves_a_profile_on_a_port(http: httpx.Client) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "sim", "--port", str(port), "--profile", "instant"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        config = None
        while config is None and time.monotonic() < deadline:
            try:
                config = http.get(f"http://127.0.0.1:{port}/_sim/config", timeout=0.5).json()
            except httpx.TransportError:
                time.sleep(0.05)
        assert config is not None, "simulator never answered"
        assert config["instant"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)
