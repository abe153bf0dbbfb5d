"""Request dependencies: the database, the settings, the catalogue, the calling API key and
its `Idempotency-Key`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import ProblemError, invalid_request
from core.db import Database
from core.idempotency import MAX_KEY_CHARS
from core.keys import find_api_key
from core.settings import Settings
from core.submission import get_catalogue, text_problem
from core.tables import ApiKey
from metachat import Catalogue

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


def owner_scope(key: ApiKey) -> str | None:
    """Whose rows a key may see: its own id, or None (everyone's) for an admin key."""
    return None if key.is_admin else key.id


def _idempotency_key(
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            description="Same key + same body within 24 h: the first response again.",
        ),
    ] = None,
) -> str | None:
    if idempotency_key is None:
        return None
    if not 1 <= len(idempotency_key) <= MAX_KEY_CHARS or text_problem(idempotency_key):
        raise ProblemError(
            422,
            "Invalid request",
            "the Idempotency-Key header is invalid",
            errors=[(("header", "Idempotency-Key"), f"must be 1..{MAX_KEY_CHARS} characters")],
        )
    return idempotency_key


IdempotencyKeyDep = Annotated[str | None, Depends(_idempotency_key)]


def get_catalogue_dep(settings: SettingsDep) -> Catalogue:
    return get_catalogue(settings.metachat_catalogue_overrides)


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue_dep)]


def _declared_query(dependant: Dependant) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared_query(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    """422 for query parameters the route does not take: `?stauts=failed` would otherwise
    quietly list everything. Add to a router as `dependencies=[Depends(reject_unknown_query)]`."""
    dependant = getattr(request.scope.get("route"), "dependant", None)
    if dependant is None:
        return
    unknown = sorted(set(request.query_params) - _declared_query(dependant))
    if unknown:
        raise ProblemError(
            422,
            "Invalid request",
            "the request has unknown query parameters",
            errors=[(("query", name), "unknown query parameter") for name in unknown],
        )


def refuse_unstorable_text(request: Request) -> None:
    """Refuse a path or query value no database column can hold (a NUL character), whatever
    the route: such a value matches nothing, and PostgreSQL refuses even to compare it.
    A path id is simply not found (404, as for any string that cannot be an id); a query value
    is invalid (422). Either way `errors` points at it. Installed on the whole app, so it runs
    before each route's own checks."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ProblemError(
                404,
                "Not Found",
                f"no such {name.removesuffix('_id')}",
                errors=[(("path", name), problem)],
            )
    errors: list[tuple[tuple[str | int, ...], str]] = []
    for name, value in request.query_params.multi_items():
        if problem := text_problem(name):
            errors.append((("query", name), f"the parameter name {problem}"))
        elif problem := text_problem(value):
            errors.append((("query", name), problem))
    if errors:
        raise invalid_request(errors)
