"""The bulk user's path end to end: `mcjobs batch submit FILE --wait --download DIR` against
real `mcjobs api`, `worker`, `beat` and `sim` processes on PostgreSQL and a private Redis."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.services import postgres_available

pytestmark = [pytest.mark.timeout(420)]

JOBS = 50
CLI = (sys.executable, "-m", "cli")


@dataclass(frozen=True)
class RunningService:
    api_url: str
    api_key: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def service() -> Iterator[RunningService]:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable at TEST_DATABASE_URL")
    from bench.stack import Stack, create_api_key, fresh_postgres

    with fresh_postgres() as database_url, Stack(database_url) as stack:
        sim_url = stack.start_sim(profile="fast")
        env = {
            "METACHAT_BASE_URL": sim_url,
            "METACHAT_API_KEY": "sim-any-key",
            "POLL_TIME_SCALE": "0.02",
            "WEBHOOK_ALLOW_PRIVATE": "true",
            "ARCHIVE_ALLOW_PRIVATE": "true",
        }
        api_url = stack.start_api(env)
        stack.start_worker(env, concurrency=2)
        stack.start_beat(env)
        api_key, _secret = create_api_key(stack, name="bulk-user", admin=False)
        cli_env = stack.env({"MCJOBS_URL": api_url, "MCJOBS_API_KEY": api_key})
        yield RunningService(api_url, api_key, cli_env)


def mcjobs(
    service: RunningService, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        env=service.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _specs_file(directory: Path) -> Path:
    path = directory / "specs.jsonl"
    lines = [
        json.dumps(
            {"prompt": f"a lighthouse at dawn, take {n}", "metadata": {"sku": f"SKU-{n:03d}"}}
        )
        for n in range(JOBS)
    ]
    path.write_text("# one spec per line\n" + "\n".join(lines) + "\n")
    return path


def test_a_batch_file_is_waited_for_and_every_result_downloaded(
    service: RunningService, tmp_path: Path
) -> None:
    specs = _specs_file(tmp_path)
    out_dir = tmp_path / "results"
    args = (
        "batch",
        "submit",
        str(specs),
        "--model",
        "flux-2-pro",
        "--param",
        "aspect=16:9",
        "--wait",
        "--download",
        str(out_dir),
        "--name",
        "{sku}",
        "--interval",
        "0.5",
        "--timeout",
        "240",
    )

    run = mcjobs(service, *args)

    assert run.returncode == 0, run.stderr[-3000:]
    with (out_dir / "manifest.csv").open() as manifest:
        rows = list(csv.DictReader(manifest))
    assert len(rows) == JOBS
    assert {row["status"] for row in rows} == {"succeeded"}
    assert [json.loads(row["metadata"])["sku"] for row in rows] == [
        f"SKU-{n:03d}" for n in range(JOBS)
    ]
    for row in rows:
        files = row["files"].split(";")
        assert files and all(name.startswith(json.loads(row["metadata"])["sku"]) for name in files)
        assert all((out_dir / name).stat().st_size > 0 for name in files)
        assert row["cost_points"] != ""

    again = mcjobs(service, *args)

    assert again.returncode == 0, again.stderr[-3000:]
    assert "already submitted" in again.stderr
    first_id = run.stdout.split()[0]
    assert again.stdout.split()[0] == first_id
    listed = mcjobs(service, "jobs", "ls", "--batch", first_id, "--all", "--json")
    page = json.loads(listed.stdout)
    assert page["next_cursor"] is None
    assert len(page["data"]) == JOBS


def test_a_bad_line_is_reported_with_its_line_number(
    service: RunningService, tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(
        json.dumps({"prompt": "fine"})
        + "\n\n"
        + json.dumps({"prompt": "bad", "params": {"num": 9}})
        + "\n"
    )

    run = mcjobs(service, "batch", "submit", str(path), "--model", "flux-2-pro")

    assert run.returncode == 1
    assert "jobs.1.params.num" in run.stderr
    assert "line 3" in run.stderr


def test_one_job_from_flags_is_waited_for(service: RunningService, tmp_path: Path) -> None:
    run = mcjobs(
        service,
        "submit",
        "--model",
        "z-image-turbo",
        "--prompt",
        "a red kite",
        "--param",
        "aspect=1:1",
        "--meta",
        "sku=K-1",
        "--wait",
        "--interval",
        "0.3",
        "--timeout",
        "120",
        "--json",
    )

    assert run.returncode == 0, run.stderr[-3000:]
    job = json.loads(run.stdout)
    assert job["status"] == "succeeded"
    assert job["metadata"] == {"sku": "K-1"}
    assert job["result"]["image_urls"]
