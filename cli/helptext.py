"""How `mcjobs … --help` reads: plain text (see `cli.main`), and each command's summary whole.

Click cuts a command's summary to what fits on one line after its name ("Run a Celery worker:
the submit, poll, maintenance and..."); `CommandGroup` lists the whole first sentence instead,
wrapped under the column like option help.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperGroup

SUMMARY_CHARS = 300


class CommandGroup(TyperGroup):
    """A command group whose help lists each subcommand with its first sentence, wrapped."""

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(SUMMARY_CHARS)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
