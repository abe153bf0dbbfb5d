"""`mcjobs`: the one command for serving, operating and using MetaChat Jobs."""

from __future__ import annotations

import typer

from cli import client_cmds, keys, ops, serve, up, upstream, webhooks
from cli.helptext import CommandGroup

app = typer.Typer(
    name="mcjobs",
    help="MetaChat Jobs: batches, polling, webhooks and costs in front of MetaChat's media API.",
    cls=CommandGroup,
    no_args_is_help=True,
    add_completion=False,
    # Plain help: Rich's help tags every flag `<bool>` as if it took a value, and eats any
    # `[NAME]` in a help string as markup.
    rich_markup_mode=None,
)
serve.register(app)
up.register(app)
keys.register(app)
client_cmds.register(app)
webhooks.register(app)
ops.register(app)
upstream.register(app)


def main() -> None:
    app()
