"""`mcjobs upstream check`: does MetaChat have every path the catalogue relies on?

Free and quick: every probe is a request MetaChat must refuse or answer without creating a task
(see `metachat.probe`). Prints one table, the ``METACHAT_CATALOGUE_OVERRIDES`` that would switch
to a known alternative, and hints. Exit codes: 0 all present; 1 a path the catalogue relies on
is missing, refuses a model, or FLUX ``mode`` is set the wrong way; 2 the key was refused (or
none is set); 3 the check could not finish (unreachable, rate limited, an unexpected answer).
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from cli.console import err, out, print_json
from core.settings import Settings, get_settings
from core.submission import get_catalogue
from metachat.probe import EXIT_AUTH, EXIT_MISCONFIGURED, Row, UpstreamReport, check_configured

upstream_app = typer.Typer(help="MetaChat itself: check the key and the catalogue's paths.")

_STYLES = {"exists": "green", "optional": "green", "required": "green", "fallback": "dim"}


def register(app: typer.Typer) -> None:
    app.add_typer(upstream_app, name="upstream")


@upstream_app.command("check")
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Probe every MetaChat path the catalogue uses, at no cost.

    Every probe is a request MetaChat must refuse (an empty prompt, an unknown task id).

    Exits 1 when a path the catalogue relies on is missing (printing the override that
    switches to a known alternative), 2 when the key is refused, 3 when the check could not
    finish.
    """
    settings = get_settings()
    if settings.metachat_api_key is None:
        err.print("METACHAT_API_KEY is not set: there is no key to check.", highlight=False)
        raise typer.Exit(EXIT_AUTH)
    try:
        get_catalogue(settings.metachat_catalogue_overrides)
    except ValueError as exc:
        err.print(f"METACHAT_CATALOGUE_OVERRIDES is refused: {exc}", markup=False)
        raise typer.Exit(EXIT_MISCONFIGURED) from None
    report = run_check(settings)
    if as_json:
        print_json(report.as_json())
    else:
        print_report(report)
    raise typer.Exit(report.exit_code)


def run_check(settings: Settings) -> UpstreamReport:
    """The report for the configured key, base URL and catalogue."""
    api_key, app_id = settings.metachat_api_key, settings.metachat_app_id
    return asyncio.run(
        check_configured(
            get_catalogue(settings.metachat_catalogue_overrides),
            base_url=settings.metachat_base_url,
            llm_base_url=settings.metachat_llm_base_url,
            api_key=api_key.get_secret_value() if api_key is not None else None,
            app_id=app_id.get_secret_value() if app_id is not None else None,
            overrides=settings.metachat_catalogue_overrides,
            connect_timeout=settings.metachat_connect_timeout,
            read_timeout=settings.metachat_read_timeout,
        )
    )


def print_report(report: UpstreamReport) -> None:
    """The table, then the overrides to set and the hints."""
    sent = f"{report.requests} free request{'' if report.requests == 1 else 's'}"
    out.print(f"MetaChat at {report.base_url}: {sent}", highlight=False)
    out.print(report_table(report.rows))
    if report.overrides is not None:
        out.print("Known alternatives answer. To use them (your current overrides included):")
        value = json.dumps(report.overrides, ensure_ascii=False)
        out.print(f"METACHAT_CATALOGUE_OVERRIDES='{value}'", markup=False, highlight=False)
    for hint in report.hints:
        out.print(f"- {hint}", markup=False, highlight=False)
    out.print(_verdict(report), markup=False, highlight=False)


def report_table(rows: list[Row]) -> Table:
    """One row per path: what uses it, the path, what MetaChat answered, and why."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("what", no_wrap=True)
    table.add_column("path", no_wrap=True)
    table.add_column("answer", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for row in rows:
        style = "red" if row.problem else _STYLES.get(row.answer, "yellow")
        if not row.relied_on and not row.problem:
            style = "cyan" if row.answer == "exists" else "dim"
        table.add_row(
            Text(row.what),
            Text(f"{row.method} {row.path}"),
            Text(row.answer, style=style),
            Text(row.detail),
        )
    return table


def _verdict(report: UpstreamReport) -> str:
    return {
        0: "OK: every path the catalogue relies on answers.",
        1: "PROBLEM: a path the catalogue relies on is missing or refuses a model (exit 1).",
        2: "PROBLEM: MetaChat refused the key (exit 2).",
        3: "INCOMPLETE: some paths could not be checked (exit 3).",
    }[report.exit_code]
