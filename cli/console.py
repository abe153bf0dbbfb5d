"""What the client commands print and how they fail: results on stdout, progress and errors
on stderr, problem documents shown field by field, and the exit codes.

Exit codes: 0 done (and, when waiting, every job succeeded); 1 the request failed; 3 waited and
some jobs did not succeed; 4 the wait timed out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from cli.http import ApiClient, ApiError
from cli.progress import counts_text
from cli.specfile import SpecFileError, SpecLine

EXIT_FAILED = 1
EXIT_NOT_ALL_SUCCEEDED = 3
EXIT_TIMED_OUT = 4
UNBOUNDED_WIDTH = 100_000

out = Console(soft_wrap=True)
err = Console(stderr=True)


def connect(url: str | None, api_key: str | None) -> ApiClient:
    """The API client for the command's `--url` / `--api-key` (or the environment)."""
    try:
        return ApiClient(url, api_key)
    except ApiError as exc:
        fail(exc)


def fail(exc: ApiError | SpecFileError | ValueError, lines: Sequence[SpecLine] = ()) -> NoReturn:
    """Print the error (each field error on its line, batch indexes mapped to file `lines`)
    and exit 1."""
    if isinstance(exc, ApiError):
        messages = exc.lines()
        for item in exc.errors:
            loc = item.get("loc") or []
            if (
                len(loc) >= 2
                and loc[0] == "jobs"
                and isinstance(loc[1], int)
                and loc[1] < len(lines)
            ):
                messages.append(f"    (jobs[{loc[1]}] is line {lines[loc[1]].line} of the file)")
    else:
        messages = [f"error: {exc}"]
    for message in messages:
        err.print(message, markup=False, highlight=False)
    raise typer.Exit(EXIT_FAILED)


def call(action: Callable[[], Any]) -> Any:
    """`action()`, or `fail` with the API's error."""
    try:
        return action()
    except ApiError as exc:
        fail(exc)


def print_json(data: Any) -> None:
    """The API's JSON: coloured on a terminal; plain, indented text when piped (a list command
    prints the API's whole list answer, `{"data": [...], "next_cursor": ...}`)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out.is_terminal:
        out.print_json(text)
    else:
        typer.echo(text)


def print_table(table: Table) -> None:
    """A table fitted to the terminal; when piped, at its natural width so no value is cut
    or wrapped (a script reading it sees whole model names and ids)."""
    if out.is_terminal:
        out.print(table)
    else:
        # the table does not expand, so an unbounded width is its natural width
        Console(file=out.file, width=UNBOUNDED_WIDTH).print(table)


def summary(job: dict[str, Any]) -> str:
    """One line for a job: id, status, model, action, cost and error."""
    line = f"{job['id']}  {job['status']}  {job['model']} {job['action']}"
    if job.get("cost_points") is not None:
        line += f"  {job['cost_points']} points"
    if job.get("error"):
        line += f"  {job['error']['code']}: {job['error'].get('message', '')}"
    return line


def print_batch(batch: dict[str, Any], *, as_json: bool) -> None:
    """A batch as JSON, or as its id, status, counts by status and cost."""
    if as_json:
        print_json(batch)
        return
    out.print(f"{batch['id']}  {batch['status']}  {batch['total']} jobs", highlight=False)
    out.print(f"  {counts_text(batch['counts'])}")
    if batch.get("cost_points") is not None:
        out.print(f"  {batch['cost_points']} points", highlight=False)


def id_table(*columns: str) -> Table:
    """A plain table whose first column (an id) is never cut: ids are what users copy."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(columns[0], no_wrap=True, min_width=30)
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    return table


def short_time(rfc3339: str) -> str:
    """``2026-12-01T09:10:47.376207Z`` → ``2026-12-01 09:10:47``."""
    return rfc3339.replace("T", " ")[:19]
