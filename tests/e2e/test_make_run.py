"""The README's promise: `mcjobs up` (what `make run` calls) brings up the whole service from
nothing — embedded Redis, SQLite, the simulator, API, worker and beat — and Ctrl-C stops it all.
Its console shows what a person wants to follow (a job finishing), not beat's every tick."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.services import free_port
from tests.support.waiting import ConditionTimeout, wait_until


class Console:
    """Everything the stack prints (stdout and stderr, as a terminal shows them), read as it
    comes so the pipe never fills."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        self._stream = process.stdout
        self._lock = threading.Lock()
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._stream:
            with self._lock:
                self._lines.append(line.rstrip())

    @property
    def lines(self) -> list[str]:
        with self._lock:
            return list(self._lines)

    def wait_for(self, pattern: str, timeout: float) -> str:
        """The first line matching `pattern`, waiting for it."""

        def matching() -> str | None:
            return next((line for line in self.lines if re.search(pattern, line)), None)

        try:
            return wait_until(matching, timeout=timeout, what=f"a line matching {pattern!r}")
        except ConditionTimeout:
            raise AssertionError(f"never printed {pattern!r}; got: {self.lines[-80:]}") from None

    def close(self) -> None:
        self._reader.join(timeout=10)
        self._stream.close()


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
        stderr=subprocess.STDOUT,
        text=True,
    )
    console = Console(process)
    children: list[psutil.Process] = []
    try:
        key = console.wait_for(r"^dev key", timeout=90).split()[2]
        lines = console.lines
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

        # The job was polled to its end on beat's ticks: the console says it finished, and
        # none of the ticks that got it there took a line.
        console.wait_for(r"poll: \d+ polled, [1-9]\d* succeeded", timeout=30)
        assert [line for line in console.lines if "Sending due task" in line] == []
        assert [line for line in console.lines if "Discarding revoked task" in line] == []
        # A person sees the requests they made, not one line per call to MetaChat.
        console.wait_for(r'"POST /v1/jobs HTTP/1.1" 202', timeout=10)
        assert [line for line in console.lines if "HTTP Request:" in line] == []
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            console.close()
    assert wait_until(
        lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
        timeout=30,
        what="children to exit",
    )
