"""`mcjobs jobs …`: list, show, cancel a job, and read its history."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from cli.console import (
    call,
    connect,
    id_table,
    out,
    print_json,
    print_table,
    short_time,
    summary,
)
from cli.download import result_urls
from cli.flags import AllOpt, CursorOpt, JsonOpt, KeyOpt, LimitOpt, ListJsonOpt, UrlOpt
from cli.helptext import CommandGroup

jobs_app = typer.Typer(
    cls=CommandGroup, help="Jobs: list, show, cancel, events.", no_args_is_help=True
)


@jobs_app.command("ls")
def jobs_ls(
    status: Annotated[
        list[str] | None, typer.Option(metavar="STATUS", help="Only these statuses; repeatable.")
    ] = None,
    model: Annotated[str | None, typer.Option(metavar="MODEL", help="Only this model.")] = None,
    provider: Annotated[
        str | None, typer.Option(metavar="PROVIDER", help="Only this provider.")
    ] = None,
    batch: Annotated[
        str | None, typer.Option("--batch", metavar="BATCH_ID", help="Only this batch's.")
    ] = None,
    limit: LimitOpt = 20,
    every: AllOpt = False,
    cursor: CursorOpt = None,
    as_json: ListJsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List jobs, newest first."""
    params = {"status": status, "model": model, "provider": provider, "batch_id": batch}
    with connect(url, api_key) as client:
        page = call(
            lambda: client.listing("/v1/jobs", limit=limit, cursor=cursor, every=every, **params)
        )
    if as_json:
        print_json(page)
        return
    table = id_table("id", "status", "model", "points", "created")
    for job in page["data"]:
        cost = "" if job["cost_points"] is None else str(job["cost_points"])
        model = job["model"] + ("" if job["action"] == "generate" else f" {job['action']}")
        table.add_row(job["id"], job["status"], model, cost, short_time(job["created_at"]))
    print_table(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="job_…")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show one job: status, result URLs, cost, error."""
    with connect(url, api_key) as client:
        job = call(lambda: client.get(f"/v1/jobs/{job_id}"))
    if as_json:
        print_json(job)
        return
    out.print(summary(job), markup=False, highlight=False)
    for name in ("prompt", "params", "batch_id", "upstream_task_id", "created_at", "finished_at"):
        if job.get(name) not in (None, {}, ""):
            out.print(f"  {name}: {job[name]}", markup=False, highlight=False)
    for file_url in result_urls(job):
        out.print(f"  {file_url}", markup=False, highlight=False)


@jobs_app.command("events")
def jobs_events(
    job_id: Annotated[str, typer.Argument(help="job_…")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """A job's history: every status change and why."""
    with connect(url, api_key) as client:
        events = call(lambda: list(client.pages(f"/v1/jobs/{job_id}/events", limit=500)))
    for event in events:
        detail = f"  {json.dumps(event['detail'])}" if event.get("detail") else ""
        out.print(
            f"{event['at']}  {event['from'] or '-'} → {event['to']}  {event['reason']}{detail}",
            markup=False,
            highlight=False,
        )


@jobs_app.command("cancel")
def jobs_cancel(
    job_id: Annotated[str, typer.Argument(help="job_…")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Cancel a job (a running one may still be charged upstream)."""
    with connect(url, api_key) as client:
        job, _ = call(lambda: client.post(f"/v1/jobs/{job_id}/cancel"))
    out.print(summary(job), markup=False, highlight=False)
