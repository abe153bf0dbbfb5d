"""A multi-node deployment on one machine for end-to-end tests: worker nodes (each
``mcjobs worker --hostname``, each in its own session so it can be SIGKILLed with its pool),
beats and API processes, all on one database and one broker.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.api_process import ApiProcess, api_process
from tests.support.pipeline_processes import FAST_PIPELINE_ENV, MCJOBS

SUBMIT_LINE = re.compile(r"submit: (\d+) claimed, (\d+) submitted")
POLL_LINE = re.compile(r"poll: (\d+) polled, (\d+) succeeded, (\d+) failed")


@dataclass
class NodeWork:
    """What one worker node's log says it did."""

    submitted: int = 0
    polled: int = 0
    finished: int = 0


def node_work(log: Path) -> NodeWork:
    text = log.read_text(errors="replace") if log.exists() else ""
    work = NodeWork()
    for match in SUBMIT_LINE.finditer(text):
        work.submitted += int(match.group(2))
    for match in POLL_LINE.finditer(text):
        work.polled += int(match.group(1))
        work.finished += int(match.group(2)) + int(match.group(3))
    return work


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    beats: list[subprocess.Popen[bytes]] = field(default_factory=list)
    apis: list[ApiProcess] = field(default_factory=list)
    stack: ExitStack = field(default_factory=ExitStack)

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            return subprocess.Popen(
                [MCJOBS, *args],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def node_log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def start_node(self, name: str, concurrency: int = 1, loglevel: str = "INFO") -> None:
        argv = ["worker", "--concurrency", str(concurrency), "--hostname", f"{name}@%h"]
        self.nodes[name] = self._spawn([*argv, "--loglevel", loglevel], self.node_log(name))

    def beat_log(self, number: int) -> Path:
        return self.logs / f"beat-{number}.log"

    def start_beat(self, loglevel: str = "INFO") -> None:
        log = self.beat_log(len(self.beats) + 1)
        self.beats.append(self._spawn(["beat", "--loglevel", loglevel], log))

    def start_api(self) -> ApiProcess:
        api = self.stack.enter_context(
            api_process(self.env["DATABASE_URL"], self.env["REDIS_URL"], self.logs, self.env)
        )
        self.apis.append(api)
        return api

    def stop_api(self, api: ApiProcess) -> None:
        api.process.terminate()
        api.process.wait(timeout=30)

    def kill_node(self, name: str) -> None:
        """SIGKILL a node and its pool children at once, as a machine crash would."""
        process = self.nodes[name]
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def work(self, name: str) -> NodeWork:
        return node_work(self.node_log(name))

    def log_tail(self, characters: int = 3000) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-characters:]}"
            for path in sorted(self.logs.glob("*.log"))
        )

    def stop(self) -> None:
        processes = [*self.beats, *self.nodes.values()]
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.stack.close()


@contextmanager
def cluster(env: Mapping[str, str], logs: Path) -> Iterator[Cluster]:
    """Nothing started yet; everything started is stopped on the way out."""
    running = Cluster({**os.environ, **FAST_PIPELINE_ENV, **env}, logs)
    try:
        yield running
    finally:
        running.stop()
