"""Every list command's `--json` is the API's list answer, `{"data": [...], "next_cursor": ...}`,
page for page; and a table written to a pipe keeps every value whole on its row."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.db import Database
from core.keys import CreatedKey
from core.settings import Settings
from tests.support.webhook_api import served_api
from tests.support.webhook_rows import finish_job, make_key

LONG_MODEL = "doubao-seedream-5-0-pro-260628"  # the catalogue's longest model id


@dataclass(frozen=True)
class Api:
    url: str
    key: CreatedKey

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(
            self.url + path,
            params=params,
            headers={"Authorization": f"Bearer {self.key.api_key}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body: Any) -> Any:
        response = httpx.post(
            self.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.key.api_key}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
        return response.json()

    def cli(self, *args: str, columns: int = 80) -> str:
        env = {"MCJOBS_URL": self.url, "MCJOBS_API_KEY": self.key.api_key, "COLUMNS": str(columns)}
        result = CliRunner().invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout


@pytest.fixture
def api(db: Database, db_url: str, settings_for: Callable[..., Settings]) -> Iterator[Api]:
    key = make_key(db, "lister")
    with served_api(settings_for(db_url), db) as url:
        api = Api(url, key)
        for n in range(3):
            api.post(
                "/v1/batches",
                {"jobs": [{"prompt": f"take {n}"}] * 2, "defaults": {"model": "flux-2-pro"}},
            )
        api.post("/v1/jobs", {"model": LONG_MODEL, "prompt": "a lighthouse at dawn"})
        for _ in range(3):
            finish_job(db, key, "https://hooks.example.com/in")
        yield api


LISTS = [
    pytest.param(("jobs", "ls"), "/v1/jobs", id="jobs"),
    pytest.param(("batch", "ls"), "/v1/batches", id="batches"),
    pytest.param(("webhooks", "ls"), "/v1/webhooks/deliveries", id="webhooks"),
]


@pytest.mark.parametrize(("command", "path"), LISTS)
def test_json_is_the_apis_list_answer_page_by_page(
    api: Api, command: tuple[str, ...], path: str
) -> None:
    first = json.loads(api.cli(*command, "--limit", "2", "--json"))
    assert first == api.get(path, limit=2)
    assert len(first["data"]) == 2 and first["next_cursor"]

    second = json.loads(
        api.cli(*command, "--limit", "2", "--cursor", first["next_cursor"], "--json")
    )
    assert second == api.get(path, limit=2, cursor=first["next_cursor"])

    everything = json.loads(api.cli(*command, "--all", "--json"))
    assert everything == {"data": api.get(path, limit=500)["data"], "next_cursor": None}
    assert [row["id"] for row in everything["data"][:4]] == [
        row["id"] for row in first["data"] + second["data"]
    ]


def test_a_piped_table_keeps_each_model_name_whole_on_its_row(api: Api) -> None:
    [job] = api.get("/v1/jobs", model=LONG_MODEL)["data"]

    table = api.cli("jobs", "ls", columns=60)

    [row] = [line for line in table.splitlines() if job["id"] in line]
    assert LONG_MODEL in row.split()
    assert "queued" in row.split()
