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
    typer.Option("--url", envvar="MCJOBS_URL", help="API base URL.", show_default=False),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--api-key", envvar="MCJOBS_API_KEY", help="API key.", show_default=False),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Model id, e.g. mj-v7.")]
ActionOpt = Annotated[
    str | None, typer.Option("--action", help="Action (default: the model's generate action).")
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="A model param NAME=VALUE (VALUE read as JSON if it is)."),
]
MetaOpt = Annotated[list[str] | None, typer.Option("--meta", help="Metadata NAME=VALUE.")]
PriorityOpt = Annotated[int | None, typer.Option(help="-10..10, higher first.", min=-10, max=10)]
DeadlineOpt = Annotated[float | None, typer.Option("--deadline", help="Seconds to finish.")]
WebhookOpt = Annotated[str | None, typer.Option("--webhook-url", help="Where to POST events.")]
WaitOpt = Annotated[bool, typer.Option("--wait", help="Wait until finished, showing progress.")]
DownloadOpt = Annotated[
    Path | None,
    typer.Option("--download", help="Save result files and manifest.csv here (implies --wait)."),
]
NameOpt = Annotated[
    str,
    typer.Option("--name", help="File name template: {id}, {n}, {model}, {action}, metadata keys."),
]
IntervalOpt = Annotated[float, typer.Option(help="Seconds between status checks.", min=0.05)]
TimeoutOpt = Annotated[
    float | None, typer.Option("--timeout", help="Give up waiting after this many seconds.")
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
