"""Fixtures for the storage tests: each runs against the local store and against a real
S3-compatible server (moto's server mode) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from core.db import Database
from core.settings import Settings
from tests.support.storage import MotoServer, moto_server


@pytest.fixture(scope="session")
def s3() -> Iterator[MotoServer]:
    with moto_server() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def store_overrides(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    if request.param == "s3":
        server: MotoServer = request.getfixturevalue("s3")
        return server.settings(prefix=tmp_path.name)
    return {"storage_url": str(tmp_path / "files")}


@pytest.fixture
def storage_settings(
    db: Database, settings_for: Callable[..., Settings], store_overrides: dict[str, Any]
) -> Callable[..., Settings]:
    """`storage_settings(**overrides)` → Settings on the test's database and store."""

    def make(**overrides: Any) -> Settings:
        return settings_for(
            db.url,
            public_base_url="https://files.example.test",
            archive_retry_seconds=(0.0,),
            **{**store_overrides, **overrides},
        )

    return make
