"""Fixtures for API tests: the app on the test's database (PostgreSQL and SQLite) and clients
authenticated as two ordinary keys and one admin key."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from fastapi import FastAPI

from api.app import create_app
from core.db import Database
from core.settings import Settings
from tests.support.api_client import ApiClient, ApiClients, api_clients


@pytest.fixture
def api_settings(db: Database, settings_for: Callable[..., Settings]) -> Settings:
    return settings_for(db.url)


@pytest.fixture
def app(api_settings: Settings, db: Database) -> FastAPI:
    return create_app(api_settings, db)


@pytest.fixture
def clients(app: FastAPI, db: Database) -> Iterator[ApiClients]:
    with api_clients(app, db) as made:
        yield made


@pytest.fixture
def alice(clients: ApiClients) -> ApiClient:
    return clients.new("alice")


@pytest.fixture
def bob(clients: ApiClients) -> ApiClient:
    return clients.new("bob")


@pytest.fixture
def admin(clients: ApiClients) -> ApiClient:
    return clients.new("ops", admin=True)


@pytest.fixture
def clients_with(
    db: Database, settings_for: Callable[..., Settings]
) -> Iterator[Callable[..., ApiClients]]:
    """`clients_with(**settings_overrides)` → clients of an app configured differently."""
    with ExitStack() as stack:

        def make(**overrides: object) -> ApiClients:
            app = create_app(settings_for(db.url, **overrides), db)
            return stack.enter_context(api_clients(app, db))

        yield make
