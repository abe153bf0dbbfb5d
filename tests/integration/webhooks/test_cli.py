"""`mcjobs webhooks ls | redeliver | listen`, as an integrator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.db import Database
from core.keys import new_webhook_secret
from core.settings import Settings
from core.tables import DELIVERY_DEAD, DELIVERY_PENDING, utcnow
from core.webhooks.signing import signature_headers
from tests.support.services import free_port
from tests.support.waiting import wait_until
from tests.support.webhook_api import served_api
from tests.support.webhook_rows import delivery, finish_job, make_key, set_state

ROOT = Path(__file__).resolve().parents[3]
DEAD_URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def api_url(db: Database, db_url: str, settings_for: Callable[..., Settings]) -> Iterator[str]:
    with served_api(settings_for(db_url), db) as url:
        yield url


def _run(args: list[str], api_url: str, api_key: str) -> tuple[int, str]:
    env = {"MCJOBS_URL": api_url, "MCJOBS_API_KEY": api_key}
    result = CliRunner().invoke(app, args, env=env)
    return result.exit_code, result.output


def test_ls_shows_the_keys_deliveries_and_redeliver_queues_one_again(
    db: Database, api_url: str
) -> None:
    key = make_key(db)
    finished = finish_job(db, key, DEAD_URL)
    set_state(db, finished.delivery_id, DELIVERY_DEAD)

    code, output = _run(["webhooks", "ls"], api_url, key.api_key)
    assert code == 0, output
    assert finished.delivery_id in output and "dead" in output and "job.succeeded" in output

    code, output = _run(["webhooks", "ls", "--state", "dead", "--json"], api_url, key.api_key)
    assert code == 0, output
    assert [row["id"] for row in json.loads(output)["data"]] == [finished.delivery_id]

    code, output = _run(["webhooks", "redeliver", finished.delivery_id], api_url, key.api_key)
    assert code == 0, output
    assert f"{finished.delivery_id} queued again" in output
    assert delivery(db, finished.delivery_id).state == DELIVERY_PENDING


def test_redeliver_of_an_unknown_id_fails_with_the_apis_reason(db: Database, api_url: str) -> None:
    key = make_key(db)
    code, output = _run(["webhooks", "redeliver", "msg_nope"], api_url, key.api_key)
    assert code == 1
    assert "404" in output and "msg_nope" in output


def test_ls_without_an_api_key_says_how_to_give_one() -> None:
    result = CliRunner().invoke(app, ["webhooks", "ls"], env={"MCJOBS_API_KEY": ""})
    # the same answer as every other command that talks to the API
    assert result.exit_code == 1
    assert "MCJOBS_API_KEY" in result.output


@pytest.fixture
def listener() -> Iterator[tuple[str, str, subprocess.Popen[str]]]:
    secret = new_webhook_secret()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "webhooks", "listen", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "MCJOBS_WEBHOOK_SECRET": secret},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/hook"

    def up() -> bool:
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_until(up, timeout=20, what="the listener to accept connections")
        yield url, secret, process
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_listen_accepts_a_signed_event_prints_it_and_refuses_a_forged_one(
    listener: tuple[str, str, subprocess.Popen[str]],
) -> None:
    url, secret, process = listener
    body = json.dumps({"type": "job.succeeded", "data": {"id": "job_123"}})
    good = signature_headers("msg_abc", body, [secret], at=utcnow())
    forged = signature_headers("msg_abc", body, [new_webhook_secret()], at=utcnow())

    assert httpx.post(url, content=body, headers=good).status_code == 200
    assert httpx.post(url, content=body, headers=good).status_code == 200  # a retry
    assert httpx.post(url, content=body, headers=forged).status_code == 401
    assert httpx.post(url, content=body).status_code == 401

    process.terminate()
    output, _ = process.communicate(timeout=10)
    assert "msg_abc  job.succeeded  job_123  verified" in output
    assert "(repeat #2)" in output
    assert output.count("answered 401") == 2
    assert secret not in output
