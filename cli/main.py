"""`mcjobs`: the one command for serving, operating and using MetaChat Jobs."""

from __future__ import annotations

import typer

from cli import client_cmds, keys, ops, serve, up, webhooks

app = typer.Typer(
    name="mcjobs",
    help="MetaChat Jobs: batches, polling, webhooks and costs in front of MetaChat's media API.",
    no_args_is_help=True,
    add_completion=False,
)
serve.register(app)
up.register(app)
keys.register(app)
client_cmds.register(app)
webhooks.register(app)
ops.register(app)


def main() -> None:
    app()
