"""`mcjobs keys …`: create API keys and rotate their webhook secrets."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.ops import set_budget
from core.db import get_database
from core.keys import create_api_key, rotate_webhook_secret

keys_app = typer.Typer(help="API keys (stored hashed; a key is shown once).", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    # `mcjobs keys set-budget` is the same command as `mcjobs budget set`.
    keys_app.command("set-budget")(set_budget)
    app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="A name for the key (who or what uses it).")],
    admin: Annotated[bool, typer.Option(help="May read everything and call /v1/stats.")] = False,
    tenant: Annotated[str | None, typer.Option(help="Tenant (default: the name).")] = None,
) -> None:
    """Create an API key; prints the key and its webhook secret once."""
    with get_database().session() as session:
        created = create_api_key(session, name=name, tenant=tenant, admin=admin)
    typer.echo(f"id:             {created.id}")
    typer.echo(f"api key:        {created.api_key}")
    typer.echo(f"webhook secret: {created.webhook_secret}")
    typer.echo("Store both now: the key is kept only as a hash and is not shown again.", err=True)


@keys_app.command("rotate-secret")
def rotate_secret(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """Give a key a new webhook secret; deliveries are signed with old and new for a while."""
    with get_database().session() as session:
        secret = rotate_webhook_secret(session, key_id)
    if secret is None:
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    typer.echo(f"webhook secret: {secret}")
