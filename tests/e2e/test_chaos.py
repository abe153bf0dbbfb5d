"""The chaos run at a small size: jobs of every family through injected upstream faults, killed
workers, a flushed Redis and a restarted API still all end, once each, with one webhook each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import postgres_available

REPO = Path(__file__).resolve().parents[2]
JOBS = 150


@pytest.fixture(scope="module")
def chaos_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    out = tmp_path_factory.mktemp("chaos") / "report.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.chaos",
            "--jobs",
            str(JOBS),
            "--no-write",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    if not out.exists():
        pytest.fail(f"the chaos run wrote no report (exit {run.returncode}):\n{run.stderr[-4000:]}")
    report: dict[str, object] = json.loads(out.read_text())
    report["exit_code"] = run.returncode
    report["stderr_tail"] = run.stderr[-4000:]
    return report


pytestmark = [pytest.mark.slow, pytest.mark.timeout(450)]


def test_every_submitted_job_ends_and_none_is_lost(chaos_report: dict[str, object]) -> None:
    assert chaos_report["jobs"] == JOBS
    assert chaos_report["terminal"] == JOBS, chaos_report["by_status"]
    assert chaos_report["lost"] == 0


def test_no_job_is_paid_for_twice_upstream(chaos_report: dict[str, object]) -> None:
    assert chaos_report["duplicate_jobs"] == 0
    assert chaos_report["duplicate_submits"] == 0, chaos_report["sim"]


def test_each_terminal_transition_is_announced_by_exactly_one_webhook_event(
    chaos_report: dict[str, object],
) -> None:
    assert chaos_report["bad_signatures"] == 0
    assert chaos_report["jobs_missing_webhook"] == 0, (
        chaos_report["missing_webhook_examples"],
        chaos_report["deliveries_by_state"],
    )
    assert chaos_report["jobs_with_extra_webhooks"] == 0
    assert chaos_report["batches_missing_webhook"] == 0


def test_all_the_chaos_happened_and_the_run_drained(chaos_report: dict[str, object]) -> None:
    timeline = chaos_report["timeline"]
    assert isinstance(timeline, dict)
    events = sorted(name for _, name, _ in timeline["events"])
    assert events == ["kill worker", "kill worker", "restart api", "restart redis"]
    assert timeline["drained_at"] is not None, chaos_report["stderr_tail"]
    assert chaos_report["exit_code"] == 0, chaos_report["violations"]
