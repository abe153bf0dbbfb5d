"""The flags the client commands share, and the spec fields they turn into."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import fail
from cli.download import validate_template
from cli.specfile import SpecFileError, parse_assignments

UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url", envvar="MCJOBS_URL", metavar="URL", help="API base URL.", show_default=False
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key", envvar="MCJOBS_API_KEY", metavar="KEY", help="API key.", show_default=False
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
ListJsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help='Print JSON in the API\'s list shape: {"data": [...], "next_cursor"}.'
    ),
]
LimitOpt = Annotated[
    int, typer.Option(metavar="N", help="How many, newest first (one page).", min=1, max=500)
]
AllOpt = Annotated[bool, typer.Option("--all", help="Follow pages to the end.")]
CursorOpt = Annotated[
    str | None,
    typer.Option(metavar="CURSOR", help="Start where a page ended (its next_cursor)."),
]
ModelOpt = Annotated[
    str | None, typer.Option("--model", "-m", metavar="MODEL", help="Model id, e.g. mj-v7.")
]
ActionOpt = Annotated[
    str | None,
    typer.Option(
        "--action", metavar="ACTION", help="Action (default: the model's generate action)."
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="NAME=VALUE",
        help="A model param (VALUE read as JSON if it is); repeatable.",
    ),
]
MetaOpt = Annotated[
    list[str] | None,
    typer.Option("--meta", metavar="NAME=VALUE", help="Metadata; repeatable."),
]
PriorityOpt = Annotated[
    int | None, typer.Option(metavar="N", help="-10..10, higher first.", min=-10, max=10)
]
DeadlineOpt = Annotated[
    float | None, typer.Option("--deadline", metavar="SECONDS", help="Seconds to finish.")
]
WebhookOpt = Annotated[
    str | None, typer.Option("--webhook-url", metavar="URL", help="Where to POST events.")
]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until finished, showing progress.")]
DownloadOpt = Annotated[
    Path | None,
    typer.Option(
        "--download",
        metavar="DIR",
        help="Save result files and manifest.csv here (implies --wait).",
    ),
]
NameOpt = Annotated[
    str,
    typer.Option(
        "--name",
        metavar="TEMPLATE",
        help="File name template: {id}, {n}, {model}, {action}, metadata keys.",
    ),
]
IntervalOpt = Annotated[
    float, typer.Option(metavar="SECONDS", help="Seconds between status checks.", min=0.05)
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", metavar="SECONDS", help="Give up waiting after this many seconds."),
]


def assignments(items: list[str] | None, what: str, *, typed: bool = True) -> dict[str, Any]:
    try:
        return parse_assignments(items or [], what=what, typed=typed)
    except SpecFileError as exc:
        fail(exc)


def common_fields(
    model: str | None,
    action: str | None,
    params: list[str] | None,
    meta: list[str] | None,
    priority: int | None,
    deadline: float | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": model,
        "action": action,
        "params": assignments(params, "--param") or None,
        "metadata": assignments(meta, "--meta", typed=False) or None,
        "priority": priority,
        "deadline_seconds": deadline,
    }
    return {name: value for name, value in fields.items() if value is not None}


def parse_source(source: str) -> dict[str, Any]:
    job_id, _, index = source.partition(":")
    ref: dict[str, Any] = {"job_id": job_id}
    if index:
        try:
            ref["index"] = int(index)
        except ValueError:
            fail(ValueError(f"--source {source!r}: the tile after ':' must be 1..4"))
    return ref


def check_template(template: str) -> None:
    try:
        validate_template(template)
    except ValueError as exc:
        fail(exc)
