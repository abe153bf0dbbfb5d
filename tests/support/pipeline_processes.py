"""Real ``mcjobs worker`` and ``mcjobs beat`` processes for end-to-end pipeline tests.

Each runs in its own session so a test can SIGKILL a worker together with its pool children,
the way a machine crash would. Output goes to log files in the test's directory.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from core.db import Database
from sim import SimConfig, SimServer

MCJOBS = str(Path(sys.executable).with_name("mcjobs"))

# Keep the pipeline quick under test: short calls and leases, scaled-down schedules.
FAST_PIPELINE_ENV = {
    "POLL_TIME_SCALE": "0.02",
    "LEASE_SECONDS": "2",
    "METACHAT_CONNECT_TIMEOUT": "1",
    "METACHAT_READ_TIMEOUT": "2",
    "PROVIDER_RATE_PER_SECOND": '{"default": 100}',
    "PROVIDER_MAX_IN_FLIGHT": '{"default": 1000}',
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "ARCHIVE_ALLOW_PRIVATE": "true",
}


class PipelineProcesses:
    """A worker and a beat against one database, Redis and upstream."""

    def __init__(self, env: Mapping[str, str], logs: Path) -> None:
        self.env = {**os.environ, **FAST_PIPELINE_ENV, **env}
        self.logs = logs
        self.worker: subprocess.Popen[bytes] | None = None
        self.beat: subprocess.Popen[bytes] | None = None
        self._starts = 0

    def _spawn(self, *args: str, log_name: str) -> subprocess.Popen[bytes]:
        log = (self.logs / log_name).open("ab")
        try:
            return subprocess.Popen(
                [MCJOBS, *args],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start_worker(self, concurrency: int = 2) -> None:
        self._starts += 1
        self.worker = self._spawn(
            "worker", "--concurrency", str(concurrency), log_name=f"worker-{self._starts}.log"
        )

    def start_beat(self) -> None:
        self.beat = self._spawn("beat", log_name="beat.log")

    def start(self) -> PipelineProcesses:
        self.start_worker()
        self.start_beat()
        return self

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool children at once: nothing gets to clean up."""
        if self.worker is not None:
            _signal_group(self.worker, signal.SIGKILL)
            self.worker.wait(timeout=10)
            self.worker = None

    def stop(self) -> None:
        for process in (self.beat, self.worker):
            if process is not None and process.poll() is None:
                # the main process alone: it stops its pool children warmly
                process.send_signal(signal.SIGTERM)
        for process in (self.beat, self.worker):
            if process is None:
                continue
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait(timeout=10)
        self.worker = self.beat = None

    def log_tail(self, characters: int = 4000) -> str:
        text = "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-characters:]}"
            for path in sorted(self.logs.glob("*.log"))
        )
        return text


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


class RunningPipeline:
    """What an end-to-end test gets: the database, the simulator, the processes."""

    def __init__(
        self, db: Database, sim: SimServer, processes: PipelineProcesses, redis_url: str
    ) -> None:
        self.db = db
        self.sim = sim
        self.processes = processes
        self.redis_url = redis_url


@contextmanager
def running_pipeline(
    *,
    database_url: str,
    redis_url: str,
    logs: Path,
    sim_config: SimConfig | None = None,
    env: Mapping[str, str] | None = None,
    start: bool = True,
) -> Iterator[RunningPipeline]:
    """A simulator, a worker and a beat; everything stopped on the way out."""
    sim = SimServer(sim_config or SimConfig.for_profile("fast")).start()
    db = Database(database_url)
    processes = PipelineProcesses(
        {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "METACHAT_BASE_URL": sim.base_url,
            "METACHAT_LLM_BASE_URL": sim.llm_base_url,
            "METACHAT_API_KEY": "e2e-pipeline-key",
            # copies of results go to the test's own directory, never the checkout's var/
            "STORAGE_URL": str(logs / "files"),
            **(env or {}),
        },
        logs,
    )
    try:
        if start:
            processes.start()
        yield RunningPipeline(db, sim, processes, redis_url)
    finally:
        processes.stop()
        sim.stop()
        db.dispose()


class CutSubmits(logging.Handler):
    """Counts submit requests that reached the in-process simulator but whose sender vanished
    before the simulator read them (uvicorn then reports ``ClientDisconnect``): requests that
    were on the wire when a worker was killed, yet left no task to count."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and type(error).__name__ == "ClientDisconnect":
            self.count += 1


@contextmanager
def counting_cut_submits() -> Iterator[CutSubmits]:
    handler = CutSubmits()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
