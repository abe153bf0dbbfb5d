"""`mcjobs keys …`: create, list and revoke API keys, and rotate their webhook secrets.

These commands work on the database directly (`DATABASE_URL`): they are the operator's, and no
API key can manage keys. A listing never shows a key, its hash or its webhook secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import typer
from sqlalchemy import select, update

from cli.console import id_table, print_json, print_table, short_time
from cli.flags import ListJsonOpt
from cli.helptext import CommandGroup
from cli.ops import set_budget
from core.db import get_database
from core.keys import create_api_key, rotate_webhook_secret
from core.tables import ApiKey, utcnow
from core.views import rfc3339

keys_app = typer.Typer(
    cls=CommandGroup,
    help="API keys (stored hashed; a key is shown once).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    # `mcjobs keys set-budget` is the same command as `mcjobs budget set`.
    keys_app.command("set-budget")(set_budget)
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(
    name: Annotated[
        str, typer.Option(metavar="NAME", help="A name for the key (who or what uses it).")
    ],
    admin: Annotated[bool, typer.Option(help="May read everything and call /v1/stats.")] = False,
    tenant: Annotated[
        str | None, typer.Option(metavar="TENANT", help="Tenant (default: the name).")
    ] = None,
) -> None:
    """Create an API key; prints the key and its webhook secret once."""
    with get_database().session() as session:
        created = create_api_key(session, name=name, tenant=tenant, admin=admin)
    typer.echo(f"id:             {created.id}")
    typer.echo(f"api key:        {created.api_key}")
    typer.echo(f"webhook secret: {created.webhook_secret}")
    typer.echo("Store both now: the key is kept only as a hash and is not shown again.", err=True)


def key_view(key: ApiKey) -> dict[str, Any]:
    """What `keys ls` shows of a key: never the key, its hash or its webhook secret."""
    return {
        "id": key.id,
        "name": key.name,
        "tenant": key.tenant,
        "admin": key.is_admin,
        "created_at": rfc3339(key.created_at),
        "revoked_at": rfc3339(key.revoked_at),
        "max_points_daily": key.max_points_daily,
        "max_points_total": key.max_points_total,
    }


def _budget_text(key: dict[str, Any]) -> str:
    limits = [
        f"{key[field]:,}/{label}"
        for field, label in (("max_points_daily", "day"), ("max_points_total", "total"))
        if key[field] is not None
    ]
    return " ".join(limits) or "-"


@keys_app.command("ls")
def list_keys(as_json: ListJsonOpt = False) -> None:
    """List API keys, oldest first: id, name, admin, created, revoked, budget."""
    with get_database().read_session() as session:
        rows = session.scalars(select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)).all()
        keys = [key_view(row) for row in rows]
    if as_json:
        print_json({"data": keys, "next_cursor": None})
        return
    table = id_table("id", "name", "admin", "created", "revoked", "budget")
    for key in keys:
        table.add_row(
            key["id"],
            key["name"],
            "yes" if key["admin"] else "",
            short_time(key["created_at"]),
            short_time(key["revoked_at"]) if key["revoked_at"] else "",
            _budget_text(key),
        )
    print_table(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Revoke a key: from now on it is answered 401 and its dashboard sessions end.

    Jobs it already submitted carry on (and their webhooks are still sent). Revoking a revoked
    key again changes nothing.
    """
    now = utcnow()
    with get_database().session() as session:
        revoked = session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
            .returning(ApiKey.id)
        ).scalar_one_or_none()
        before: dt.datetime | None = None
        if revoked is None:
            key = session.get(ApiKey, key_id)
            if key is None:
                typer.echo(f"no key {key_id}: nothing revoked (see `mcjobs keys ls`)", err=True)
                raise typer.Exit(1)
            before = key.revoked_at
    if before is not None:
        typer.echo(f"{key_id} was already revoked at {short_time(rfc3339(before) or '')}")
    else:
        typer.echo(f"{key_id} revoked")


@keys_app.command("rotate-secret")
def rotate_secret(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Give a key a new webhook secret; deliveries are signed with old and new for a while."""
    with get_database().session() as session:
        secret = rotate_webhook_secret(session, key_id)
    if secret is None:
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"webhook secret: {secret}")
