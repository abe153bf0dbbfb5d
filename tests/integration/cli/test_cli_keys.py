"""`mcjobs keys ls` and `mcjobs keys revoke`, as an operator runs them against the database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner, Result

from cli import keys as keys_cli
from cli.main import app
from core.db import Database
from core.keys import CreatedKey
from core.settings import Settings
from core.tables import ApiKey
from tests.support.webhook_api import served_api
from tests.support.webhook_rows import make_key


@pytest.fixture(autouse=True)
def cli_database(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys_cli, "get_database", lambda: db)


def _mcjobs(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


@pytest.fixture
def two_keys(db: Database) -> tuple[CreatedKey, CreatedKey]:
    ops = make_key(db, "ops", admin=True)
    shop = make_key(db, "shop")
    with db.session() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == shop.id)
            .values(max_points_daily=5000, max_points_total=1_000_000)
        )
    return ops, shop


def test_ls_lists_every_key_without_any_secret(two_keys: tuple[CreatedKey, CreatedKey]) -> None:
    ops, shop = two_keys

    table = _mcjobs("keys", "ls")
    listed = _mcjobs("keys", "ls", "--json")

    assert table.exit_code == 0, table.output
    ops_row, shop_row = (
        next(line.split() for line in table.stdout.splitlines() if key.id in line)
        for key in (ops, shop)
    )
    assert ops_row[1:3] == ["ops", "yes"]
    assert shop_row[1] == "shop" and "5,000/day" in shop_row and "1,000,000/total" in shop_row
    page = json.loads(listed.stdout)
    assert page["next_cursor"] is None
    assert [(k["id"], k["name"], k["admin"]) for k in page["data"]] == [
        (ops.id, "ops", True),
        (shop.id, "shop", False),
    ]
    assert page["data"][1]["max_points_daily"] == 5000
    assert all(k["created_at"].endswith("Z") and k["revoked_at"] is None for k in page["data"])
    for output in (table.output, listed.output):
        for key in (ops, shop):
            assert key.api_key not in output and key.api_key[:12] not in output
            assert key.webhook_secret not in output


@pytest.fixture
def api_url(db: Database, db_url: str, settings_for: Callable[..., Settings]) -> Iterator[str]:
    with served_api(settings_for(db_url), db) as url:
        yield url


def _status(api_url: str, key: CreatedKey) -> int:
    headers = {"Authorization": f"Bearer {key.api_key}"}
    return httpx.get(f"{api_url}/v1/jobs", headers=headers, timeout=10).status_code


def test_a_revoked_key_is_refused_at_once_and_revoking_again_changes_nothing(
    db: Database, api_url: str, two_keys: tuple[CreatedKey, CreatedKey]
) -> None:
    ops, shop = two_keys
    assert _status(api_url, shop) == 200

    revoked = _mcjobs("keys", "revoke", shop.id)

    assert revoked.exit_code == 0, revoked.output
    assert f"{shop.id} revoked" in revoked.stdout
    assert _status(api_url, shop) == 401
    assert _status(api_url, ops) == 200
    with db.read_session() as session:
        first_revoked_at = session.get_one(ApiKey, shop.id).revoked_at
    assert first_revoked_at is not None

    again = _mcjobs("keys", "revoke", shop.id)

    assert again.exit_code == 0, again.output
    assert "already revoked" in again.stdout
    with db.read_session() as session:
        assert session.get_one(ApiKey, shop.id).revoked_at == first_revoked_at
    listed = json.loads(_mcjobs("keys", "ls", "--json").stdout)["data"]
    assert [k["id"] for k in listed if k["revoked_at"]] == [shop.id]


def test_revoking_an_unknown_key_fails_and_says_so(
    two_keys: tuple[CreatedKey, CreatedKey],
) -> None:
    result = _mcjobs("keys", "revoke", "key_nope")

    assert result.exit_code == 1
    assert "no key key_nope" in result.output
    listed = json.loads(_mcjobs("keys", "ls", "--json").stdout)["data"]
    assert all(k["revoked_at"] is None for k in listed)
