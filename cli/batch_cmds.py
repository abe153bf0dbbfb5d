"""`mcjobs batch …`: submit a file of specs as one batch, watch it, download its results."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.console import (
    EXIT_NOT_ALL_SUCCEEDED,
    EXIT_TIMED_OUT,
    call,
    connect,
    err,
    fail,
    id_table,
    print_batch,
    print_json,
    print_table,
    short_time,
)
from cli.download import download_results
from cli.flags import (
    ActionOpt,
    AllOpt,
    CursorOpt,
    DeadlineOpt,
    DownloadOpt,
    IntervalOpt,
    JsonOpt,
    KeyOpt,
    LimitOpt,
    ListJsonOpt,
    MetaOpt,
    ModelOpt,
    NameOpt,
    ParamOpt,
    PriorityOpt,
    TimeoutOpt,
    UrlOpt,
    WaitOpt,
    assignments,
    check_template,
    common_fields,
)
from cli.helptext import CommandGroup
from cli.http import ApiClient, ApiError
from cli.progress import FINISHED, WaitTimedOut, wait_for_batch
from cli.specfile import SpecFileError, read_specs

batch_app = typer.Typer(
    cls=CommandGroup,
    help="Batches: submit a file of specs, watch, download.",
    no_args_is_help=True,
)


def save_results(
    client: ApiClient, jobs: list[dict[str, Any]], directory: Path, template: str
) -> int:
    """Save files; returns how many jobs failed to download."""
    saved = 0
    failed = 0

    def tick(entry: Any) -> None:
        nonlocal saved, failed
        saved += len(entry.files)
        failed += entry.error is not None

    with err.status(f"downloading to {directory} …"), client.files_client() as stored:
        entries = download_results(jobs, directory, template=template, on_done=tick, stored=stored)
    err.print(f"saved {saved} files for {len(entries)} jobs in {directory} (manifest.csv)")
    for entry in entries:
        if entry.error:
            err.print(f"  {entry.job['id']}: {entry.error}", markup=False)
    return failed


def derived_key(body: dict[str, Any]) -> str:
    """The `Idempotency-Key` of a batch body: the same file and flags give the same key."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "cli-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def finish_batch(
    client: ApiClient,
    batch: dict[str, Any],
    *,
    wait: bool,
    download: Path | None,
    name: str,
    interval: float,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Wait (and download) as asked, print the batch, exit with the batch's outcome."""
    try:
        if wait or download:
            batch = wait_for_batch(client, batch["id"], interval=interval, timeout=timeout)
    except WaitTimedOut as exc:
        err.print(str(exc))
        raise typer.Exit(EXIT_TIMED_OUT) from None
    except ApiError as exc:
        fail(exc)
    print_batch(batch, as_json=as_json)
    failed_downloads = 0
    if download:
        try:
            jobs = list(client.pages(f"/v1/batches/{batch['id']}/jobs", limit=500))
        except ApiError as exc:
            fail(exc)
        failed_downloads = save_results(client, jobs, download, name)
    if wait or download:
        counts = batch["counts"]
        if counts.get("succeeded", 0) != batch["total"] or failed_downloads:
            raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)


@batch_app.command("submit")
def batch_submit(
    file: Annotated[
        str, typer.Argument(help="JSON Lines, a JSON list or CSV of specs; - = stdin.")
    ],
    model: ModelOpt = None,
    action: ActionOpt = None,
    param: ParamOpt = None,
    meta: MetaOpt = None,
    priority: PriorityOpt = None,
    deadline: DeadlineOpt = None,
    webhook_url: Annotated[
        str | None,
        typer.Option(
            "--webhook-url", metavar="URL", help="The batch's webhook (and its jobs' unless set)."
        ),
    ] = None,
    batch_meta: Annotated[
        list[str] | None,
        typer.Option("--batch-meta", metavar="NAME=VALUE", help="Batch metadata; repeatable."),
    ] = None,
    max_points: Annotated[
        int | None,
        typer.Option("--max-points", metavar="POINTS", help="Budget: stop submitting past it."),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key",
            metavar="KEY",
            help="Default: derived from the batch, so a re-run resumes.",
        ),
    ] = None,
    new: Annotated[
        bool, typer.Option("--new", help="Submit again even if this batch was already sent.")
    ] = False,
    wait: WaitOpt = False,
    download: DownloadOpt = None,
    name: NameOpt = "{id}",
    interval: IntervalOpt = 2.0,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit a file of job specs as one batch; flags give the shared defaults.

    Re-running the same command finds the batch it made (unless --new): re-run to resume.
    """
    check_template(name)
    try:
        lines = read_specs(file)
    except SpecFileError as exc:
        fail(exc)
    if not lines:
        fail(ValueError(f"{file}: no job specs"))
    body: dict[str, Any] = {"jobs": [line.spec for line in lines]}
    defaults = common_fields(model, action, param, meta, priority, deadline)
    if defaults:
        body["defaults"] = defaults
    if webhook_url:
        body["webhook_url"] = webhook_url
    if batch_meta:
        body["metadata"] = assignments(batch_meta, "--batch-meta", typed=False)
    if max_points is not None:
        body["max_points"] = max_points
    key = None if new else (idempotency_key or derived_key(body))
    with connect(url, api_key) as client:
        try:
            batch, replayed = client.post("/v1/batches", body, idempotency_key=key)
        except ApiError as exc:
            fail(exc, lines)
        if replayed:
            err.print(f"already submitted as {batch['id']} (pass --new to submit it again)")
        else:
            err.print(f"submitted {batch['id']} with {batch['total']} jobs")
        finish_batch(
            client,
            client.get(f"/v1/batches/{batch['id']}") if replayed else batch,
            wait=wait,
            download=download,
            name=name,
            interval=interval,
            timeout=timeout,
            as_json=as_json,
        )


@batch_app.command("show")
def batch_show(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show a batch: status, counts by status, cost."""
    with connect(url, api_key) as client:
        batch = call(lambda: client.get(f"/v1/batches/{batch_id}"))
    print_batch(batch, as_json=as_json)


@batch_app.command("ls")
def batch_ls(
    status: Annotated[
        str | None, typer.Option(metavar="STATUS", help="running, completed or cancelled.")
    ] = None,
    limit: LimitOpt = 20,
    every: AllOpt = False,
    cursor: CursorOpt = None,
    as_json: ListJsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List batches, newest first."""
    with connect(url, api_key) as client:
        page = call(
            lambda: client.listing(
                "/v1/batches", limit=limit, cursor=cursor, every=every, status=status
            )
        )
    if as_json:
        print_json(page)
        return
    table = id_table("id", "status", "done", "points", "created")
    for batch in page["data"]:
        counts = batch["counts"]
        done = sum(counts.get(status, 0) for status in FINISHED)
        failed = done - counts.get("succeeded", 0)
        table.add_row(
            batch["id"],
            batch["status"],
            f"{done}/{batch['total']}" + (f" ({failed} not ok)" if failed else ""),
            "" if batch["cost_points"] is None else str(batch["cost_points"]),
            short_time(batch["created_at"]),
        )
    print_table(table)


@batch_app.command("wait")
def batch_wait(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    download: DownloadOpt = None,
    name: NameOpt = "{id}",
    interval: IntervalOpt = 2.0,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Wait for a batch to finish (optionally downloading its results)."""
    check_template(name)
    with connect(url, api_key) as client:
        batch = call(lambda: client.get(f"/v1/batches/{batch_id}"))
        finish_batch(
            client,
            batch,
            wait=True,
            download=download,
            name=name,
            interval=interval,
            timeout=timeout,
            as_json=as_json,
        )


@batch_app.command("download")
def batch_download(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    directory: Annotated[Path, typer.Argument(help="Where to save files and manifest.csv.")],
    name: NameOpt = "{id}",
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Save the result files of a batch's succeeded jobs and write manifest.csv (no waiting)."""
    check_template(name)
    with connect(url, api_key) as client:
        jobs = call(lambda: list(client.pages(f"/v1/batches/{batch_id}/jobs", limit=500)))
        if save_results(client, jobs, directory, name):
            raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)


@batch_app.command("cancel")
def batch_cancel(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Cancel a batch's queued jobs (running ones finish)."""
    with connect(url, api_key) as client:
        batch, _ = call(lambda: client.post(f"/v1/batches/{batch_id}/cancel"))
    print_batch(batch, as_json=as_json)


@batch_app.command("retry")
def batch_retry(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    wait: WaitOpt = False,
    download: DownloadOpt = None,
    name: NameOpt = "{id}",
    interval: IntervalOpt = 2.0,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Queue failed and timed-out jobs of a batch again, as new jobs in the same batch."""
    check_template(name)
    with connect(url, api_key) as client:
        batch, _ = call(lambda: client.post(f"/v1/batches/{batch_id}/retry"))
        err.print(f"re-queued {batch['retried']} jobs")
        finish_batch(
            client,
            batch,
            wait=wait,
            download=download,
            name=name,
            interval=interval,
            timeout=timeout,
            as_json=as_json,
        )
