"""Counters bumped in several worker processes add up at scrape with PROMETHEUS_MULTIPROC_DIR."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from core.metrics import build_registry, record_claim, render

_CHILD = """
from core.metrics import record_claim, record_submit, record_webhook_attempt
record_submit("midjourney", "accepted", 1.5)
record_submit("midjourney", "rate_limited", 0.1)
record_claim("submit", 50, 0.02)
record_webhook_attempt("failed", 0.3)
"""


def _run_worker_like_child(directory: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    subprocess.run([sys.executable, "-c", _CHILD], env=env, check=True, timeout=60)


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_from_every_process_are_summed(tmp_path: Path) -> None:
    for _ in range(3):
        _run_worker_like_child(tmp_path)
    values = _values(render(build_registry(None, multiproc_dir=str(tmp_path))).decode())
    accepted = (
        "mcjobs_upstream_submits_total",
        (("outcome", "accepted"), ("provider", "midjourney")),
    )
    assert values[accepted] == 3
    assert values[("mcjobs_pump_claimed_rows_count", (("pump", "submit"),))] == 3
    assert values[("mcjobs_pump_claimed_rows_sum", (("pump", "submit"),))] == 150
    assert values[("mcjobs_webhook_attempts_total", (("outcome", "failed"),))] == 3
    # one file set per process, named by host as well as pid (containers share a volume)
    host = socket.gethostname().replace("_", "-")
    assert {f.name.split("_", 1)[1].rsplit("-", 1)[0] for f in tmp_path.glob("*.db")} == {f"{host}"}


def test_without_a_multiprocess_directory_this_process_counts_alone() -> None:
    before = _values(render(build_registry(None, multiproc_dir="")).decode())
    record_claim("poll", 7, 0.01)
    after = _values(render(build_registry(None, multiproc_dir="")).decode())
    key = ("mcjobs_pump_claimed_rows_sum", (("pump", "poll"),))
    assert after[key] == before.get(key, 0.0) + 7
    assert ("process_cpu_seconds_total", ()) in after
