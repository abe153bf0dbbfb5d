"""Request dependencies: the database, the settings and the calling API key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mcjobs.api.errors import ProblemError
from mcjobs.core.db import Database
from mcjobs.core.keys import find_api_key
from mcjobs.core.settings import Settings
from mcjobs.core.tables import ApiKey

_bearer = HTTPBearer(auto_error=False)


def get_db(request: Request) -> Database:
    database: Database = request.app.state.db
    return database


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


def authenticate(
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The API key presented as `Authorization: Bearer …`, or 401."""
    if credentials is None or not credentials.credentials:
        raise ProblemError(
            401, "Unauthorized", "missing API key", headers={"WWW-Authenticate": "Bearer"}
        )
    with db.read_session() as session:
        key = find_api_key(session, credentials.credentials)
    if key is None:
        raise ProblemError(
            401, "Unauthorized", "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    return key


def require_admin(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
    if not key.is_admin:
        raise ProblemError(403, "Forbidden", "this route needs an admin key")
    return key


CurrentKey = Annotated[ApiKey, Depends(authenticate)]
AdminKey = Annotated[ApiKey, Depends(require_admin)]
