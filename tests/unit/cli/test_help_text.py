"""`mcjobs … --help` reads as plain help for every command: no `<bool>` after a flag (flags take
no value), no Python types such as `<list[str]>`, help strings shown as written, and each
command's summary whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli.main import app


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*path, name))


PATHS = list(_command_paths(typer.main.get_command(app)))


def _help(*path: str) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_checked() -> None:
    assert {("keys", "ls"), ("keys", "revoke"), ("jobs", "ls"), ("batch", "submit")} <= set(PATHS)
    assert len(PATHS) > 30


@pytest.mark.parametrize("path", PATHS, ids=lambda path: " ".join(path) or "mcjobs")
def test_help_has_no_type_tags_or_markup_leftovers(path: tuple[str, ...]) -> None:
    text = _help(*path)

    assert "<bool>" not in text
    assert "list[" not in text
    assert "[/" not in text
    assert not any(char in text for char in "╭╰│")
    cut = [line for line in text.splitlines() if line.rstrip().endswith("...")]
    assert not [line for line in cut if not line.startswith("Usage:")]


def test_help_strings_keep_their_brackets() -> None:
    assert "[MCJOBS_WEBHOOK_SECRET]" in _help("webhooks", "listen")
    assert "[API_PORT]" in _help("api")


def test_flags_and_options_read_as_they_are_typed() -> None:
    text = _help("batch", "submit")

    assert "-p, --param NAME=VALUE" in text
    assert "--wait " in text and "--wait <" not in text
