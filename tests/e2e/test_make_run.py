"""The README's promise: `mcjobs up` (what `make run` calls) brings up the whole service from
nothing — embedded Redis, SQLite, the simulator, API, worker and beat — and Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.services import free_port
from tests.support.waiting import wait_until


def _read_lines_until(process: subprocess.Popen[str], marker: str, timeout: float) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line.rstrip())
        if marker in line:
            return lines
    raise AssertionError(f"never printed {marker!r}; got: {lines}")


@pytest.mark.slow
def test_up_starts_everything_from_nothing_and_ctrl_c_stops_it(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "METACHAT_API_KEY", "METACHAT_BASE_URL"}
    }
    env["POLL_TIME_SCALE"] = "0.05"
    api_port, sim_port, redis_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "up",
            "--api-port",
            str(api_port),
            "--sim-port",
            str(sim_port),
            "--redis-port",
            str(redis_port),
            "--sim-profile",
            "fast",
            "--concurrency",
            "1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    children: list[psutil.Process] = []
    try:
        lines = _read_lines_until(process, "dev key", timeout=90)
        key = next(line.split()[2] for line in lines if line.startswith("dev key"))
        assert (tmp_path / "var" / "mcjobs.sqlite3").exists()
        assert any(line.startswith("simulator") for line in lines)
        base = f"http://127.0.0.1:{api_port}"
        headers = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{base}/v1/jobs",
            headers=headers,
            timeout=10,
            json={"model": "z-image-turbo", "prompt": "a lighthouse at dawn"},
        )
        assert created.status_code == 202, created.text
        job_id = created.json()["id"]

        def finished() -> dict[str, object] | None:
            job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=headers, timeout=10).json()
            return job if job["status"] in {"succeeded", "failed"} else None

        job = wait_until(finished, timeout=60, what="the job to finish")
        assert job["status"] == "succeeded", job
        result = job["result"]
        assert isinstance(result, dict) and result["image_urls"]
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 5  # redis, sim, api, worker, beat
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            assert process.stdout is not None
            process.stdout.close()
    assert wait_until(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        timeout=30,
        what="children to exit",
    )
