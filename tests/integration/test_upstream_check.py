"""`mcjobs upstream check` as an operator runs it, against the simulator in each profile.

The command sees only the environment an operator would set. Every test also reads the
simulator's counters: the check must never create (and so never be charged for) a task.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from core.settings import get_settings
from metachat import (
    CatalogueOverrides,
    MetaChatClient,
    SubmitRequest,
    UpstreamTask,
    build_catalogue,
    make_http_client,
)
from sim import SimConfig, SimServer

API_KEY = "sk-upstream-check-0001"
APP_ID = "app-upstream-check-77"
OVERRIDES_LINE = re.compile(r"^METACHAT_CATALOGUE_OVERRIDES='(?P<json>.*)'$", re.MULTILINE)


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimServer]]:
    started: list[SimServer] = []

    def start(profile: str = "fast", **overrides: Any) -> SimServer:
        server = SimServer(SimConfig.for_profile(profile, seed=3, **overrides)).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


def upstream_check(sim: SimServer, *args: str, **env: str | None) -> Done:
    """Run the command with the simulator as MetaChat; ``env`` adds or (None) removes settings."""
    environ: dict[str, str | None] = {k: None for k in os.environ if k.startswith("METACHAT_")}
    environ.update(
        METACHAT_BASE_URL=sim.base_url,
        METACHAT_LLM_BASE_URL=sim.llm_base_url,
        METACHAT_API_KEY=API_KEY,
        COLUMNS="200",
    )
    environ.update(env)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["upstream", "check", *args], env=environ)
    finally:
        get_settings.cache_clear()
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Done(result.exit_code, result.stdout, result.stderr)


def assert_nothing_billable(sim: SimServer) -> None:
    stats = sim.stats()
    assert (stats["tasks_created"], stats["points_spent"], stats["reserved"]) == (0, 0, 0)
    assert stats["duplicates"] == {}
    llm = stats["llm"]
    assert (llm["images_sent"], llm["chats"]) == (0, 0), "the OpenAI host did no paid work"


def test_the_default_profile_has_every_path_and_no_task_is_created(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim()
    done = upstream_check(sim)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: every path the catalogue relies on answers." in done.stdout
    for path in ("midjourney/imagine", "midjourney/separate", "image/generate", "account/usage"):
        assert path in done.stdout
    assert OVERRIDES_LINE.search(done.stdout) is None
    stats = sim.stats()
    assert stats["submit_requests"] >= 13, "every submit path was asked"
    assert stats["polls_unknown_id"] >= 3, "every result path was asked"
    assert stats["llm"]["by_path"]["images/edits"] == 4, "each image model that edits was asked"
    for path in ("images/generations", "chat/completions", "GET models"):
        assert path in done.stdout
    assert_nothing_billable(sim)


def test_legacy_paths_are_found_and_the_printed_override_makes_flux_work(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("legacy")
    first = upstream_check(sim)

    assert first.returncode == 1, first.stdout + first.stderr
    assert "model refused" in first.stdout
    found = OVERRIDES_LINE.search(first.stdout)
    assert found is not None, first.stdout
    overrides = json.loads(found["json"])
    assert overrides["paths"]["flux-2-pro:generate:submit"] == "flux/generate"
    assert overrides["paths"]["flux-2-pro:generate:result"] == "flux/result/{id}"
    assert overrides["default_params"] == {
        "flux-2-pro": {"mode": "pro"},
        "flux-2-max": {"mode": "max"},
    }
    assert_nothing_billable(sim)

    second = upstream_check(sim, METACHAT_CATALOGUE_OVERRIDES=found["json"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert_nothing_billable(sim)

    # With the override a real FLUX.2 job goes through on the legacy paths, mode and all.
    task = asyncio.run(_flux_job(sim, CatalogueOverrides.model_validate(overrides)))
    assert task.status == "succeeded"
    assert sim.stats()["submits_by_path"] == {"flux/generate": 1}


async def _flux_job(sim: SimServer, overrides: CatalogueOverrides) -> UpstreamTask:
    async with make_http_client(trust_env=False) as http:
        client = MetaChatClient(
            http, build_catalogue(overrides), base_url=sim.base_url, api_key=API_KEY
        )
        task_id = await client.submit(SubmitRequest("flux-2-max", "generate", prompt="a mug"))
        async with asyncio.timeout(20):
            while True:
                task = await client.fetch("flux-2-max", "generate", task_id)
                if task.is_terminal:
                    return task
                await asyncio.sleep(0.05)


def test_a_disabled_key_exits_2_after_one_request_with_a_hint(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("forbidden")
    done = upstream_check(sim)

    assert done.returncode == 2, done.stdout + done.stderr
    assert "expired or disabled (403 permission_error)" in done.stdout
    assert "METACHAT_APP_ID" in done.stdout
    assert API_KEY not in done.stdout + done.stderr
    assert sim.stats()["requests"] == 1
    assert_nothing_billable(sim)


def test_a_key_that_needs_an_app_id_is_told_so_and_passes_with_one(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim(require_app_id=True, app_id=APP_ID)
    without = upstream_check(sim)
    assert without.returncode == 2
    assert "401 authentication_error" in without.stdout
    assert "METACHAT_APP_ID, sent as the X-App-ID header" in without.stdout

    with_app_id = upstream_check(sim, METACHAT_APP_ID=APP_ID)
    assert with_app_id.returncode == 0, with_app_id.stdout
    assert APP_ID not in with_app_id.stdout + without.stdout
    assert_nothing_billable(sim)


def test_json_output_carries_the_same_verdict_for_scripts(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("legacy")
    done = upstream_check(sim, "--json")

    report = json.loads(done.stdout)
    assert report["exit_code"] == done.returncode == 1
    stats = sim.stats()
    assert report["requests"] == stats["requests"] + stats["llm"]["requests"]
    problems = [row for row in report["rows"] if row["problem"]]
    assert {row["path"] for row in problems} == {"image/generate", "flux/generate"}
    assert report["overrides"]["paths"]["flux-kontext:generate:submit"] == "flux/generate"
    assert_nothing_billable(sim)


def test_without_a_key_there_is_nothing_to_check(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim()
    done = upstream_check(sim, METACHAT_API_KEY=None)
    assert done.returncode == 2
    assert "METACHAT_API_KEY is not set" in done.stderr
    assert sim.stats()["requests"] == 0
