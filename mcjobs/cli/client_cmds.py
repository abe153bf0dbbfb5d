"""Commands for API users (`submit`, `batch …`, `jobs …`): they talk to the API over HTTP.

The API is `MCJOBS_URL` (default http://127.0.0.1:8000) and the key `MCJOBS_API_KEY`; both can
be given as `--url` / `--api-key`. Results go to stdout, progress and errors to stderr.

Exit codes: 0 done (and, when waiting, every job succeeded); 1 the request failed; 3 waited and
some jobs did not succeed; 4 the wait timed out.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from mcjobs.cli.download import download_results, result_urls, validate_template
from mcjobs.cli.http import ApiClient, ApiError
from mcjobs.cli.progress import (
    FINISHED,
    WaitTimedOut,
    counts_text,
    wait_for_batch,
    wait_for_job,
)
from mcjobs.cli.specfile import SpecFileError, SpecLine, parse_assignments, read_specs

EXIT_FAILED = 1
EXIT_NOT_ALL_SUCCEEDED = 3
EXIT_TIMED_OUT = 4

batch_app = typer.Typer(
    help="Batches: submit a file of specs, watch, download.", no_args_is_help=True
)
jobs_app = typer.Typer(help="Jobs: list, show, cancel, events.", no_args_is_help=True)

out = Console(soft_wrap=True)
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.add_typer(batch_app, name="batch")
    app.add_typer(jobs_app, name="jobs")


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


def _client(url: str | None, api_key: str | None) -> ApiClient:
    try:
        return ApiClient(url, api_key)
    except ApiError as exc:
        _fail(exc)


def _fail(exc: ApiError | SpecFileError | ValueError, lines: Sequence[SpecLine] = ()) -> NoReturn:
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


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data))


def _assignments(items: list[str] | None, what: str, *, typed: bool = True) -> dict[str, Any]:
    try:
        return parse_assignments(items or [], what=what, typed=typed)
    except SpecFileError as exc:
        _fail(exc)


def _common_fields(
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
        "params": _assignments(params, "--param") or None,
        "metadata": _assignments(meta, "--meta", typed=False) or None,
        "priority": priority,
        "deadline_seconds": deadline,
    }
    return {name: value for name, value in fields.items() if value is not None}


def _parse_source(source: str) -> dict[str, Any]:
    job_id, _, index = source.partition(":")
    ref: dict[str, Any] = {"job_id": job_id}
    if index:
        try:
            ref["index"] = int(index)
        except ValueError:
            _fail(ValueError(f"--source {source!r}: the tile after ':' must be 1..4"))
    return ref


def _summary(job: dict[str, Any]) -> str:
    line = f"{job['id']}  {job['status']}  {job['model']} {job['action']}"
    if job.get("cost_points") is not None:
        line += f"  {job['cost_points']} points"
    if job.get("error"):
        line += f"  {job['error']['code']}: {job['error'].get('message', '')}"
    return line


def _download(client: ApiClient, jobs: list[dict[str, Any]], directory: Path, template: str) -> int:
    """Save files; returns how many jobs failed to download."""
    saved = 0
    failed = 0

    def tick(entry: Any) -> None:
        nonlocal saved, failed
        saved += len(entry.files)
        failed += entry.error is not None

    with err.status(f"downloading to {directory} …"):
        entries = download_results(jobs, directory, template=template, on_done=tick)
    err.print(f"saved {saved} files for {len(entries)} jobs in {directory} (manifest.csv)")
    for entry in entries:
        if entry.error:
            err.print(f"  {entry.job['id']}: {entry.error}", markup=False)
    return failed


def _check_template(template: str) -> None:
    try:
        validate_template(template)
    except ValueError as exc:
        _fail(exc)


def submit(
    model: ModelOpt = None,
    prompt: Annotated[str | None, typer.Option("--prompt", help="The prompt.")] = None,
    action: ActionOpt = None,
    param: ParamOpt = None,
    image: Annotated[
        list[str] | None, typer.Option("--image", help="A reference image URL (repeatable).")
    ] = None,
    source: Annotated[
        str | None,
        typer.Option("--source", help="Follow-up of JOB_ID[:TILE], e.g. job_…:2 to split."),
    ] = None,
    webhook_url: WebhookOpt = None,
    meta: MetaOpt = None,
    priority: PriorityOpt = None,
    deadline: DeadlineOpt = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Retry-safe key for this request.")
    ] = None,
    wait: WaitOpt = False,
    download: DownloadOpt = None,
    name: NameOpt = "{id}",
    interval: IntervalOpt = 1.0,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Submit one job from flags."""
    _check_template(name)
    spec = _common_fields(model, action, param, meta, priority, deadline)
    if prompt is not None:
        spec["prompt"] = prompt
    if image:
        spec["images"] = [{"url": item} for item in image]
    if source:
        spec["source"] = _parse_source(source)
    if webhook_url:
        spec["webhook_url"] = webhook_url
    with _client(url, api_key) as client:
        try:
            job, _ = client.post("/v1/jobs", spec, idempotency_key=idempotency_key)
            if wait or download:
                job = wait_for_job(client, job["id"], interval=interval, timeout=timeout)
        except ApiError as exc:
            _fail(exc)
        except WaitTimedOut as exc:
            err.print(str(exc))
            raise typer.Exit(EXIT_TIMED_OUT) from None
        if as_json:
            _print_json(job)
        else:
            out.print(_summary(job), markup=False, highlight=False)
            for file_url in result_urls(job):
                out.print(f"  {file_url}", markup=False, highlight=False)
        if download:
            _download(client, [job], download, name)
    if (wait or download) and job["status"] != "succeeded":
        raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)


def _derived_key(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "cli-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def _print_batch(batch: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        _print_json(batch)
        return
    out.print(f"{batch['id']}  {batch['status']}  {batch['total']} jobs", highlight=False)
    out.print(f"  {counts_text(batch['counts'])}")
    if batch.get("cost_points") is not None:
        out.print(f"  {batch['cost_points']} points", highlight=False)


def _finish_batch(
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
        _fail(exc)
    _print_batch(batch, as_json=as_json)
    failed_downloads = 0
    if download:
        try:
            jobs = list(client.pages(f"/v1/batches/{batch['id']}/jobs", limit=500))
        except ApiError as exc:
            _fail(exc)
        failed_downloads = _download(client, jobs, download, name)
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
        typer.Option("--webhook-url", help="The batch's webhook (and its jobs' unless set)."),
    ] = None,
    batch_meta: Annotated[
        list[str] | None, typer.Option("--batch-meta", help="Batch metadata NAME=VALUE.")
    ] = None,
    max_points: Annotated[
        int | None, typer.Option("--max-points", help="Budget: stop submitting past it.")
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="Default: derived from the batch, so a re-run resumes."
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
    _check_template(name)
    try:
        lines = read_specs(file)
    except SpecFileError as exc:
        _fail(exc)
    if not lines:
        _fail(ValueError(f"{file}: no job specs"))
    body: dict[str, Any] = {"jobs": [line.spec for line in lines]}
    defaults = _common_fields(model, action, param, meta, priority, deadline)
    if defaults:
        body["defaults"] = defaults
    if webhook_url:
        body["webhook_url"] = webhook_url
    if batch_meta:
        body["metadata"] = _assignments(batch_meta, "--batch-meta", typed=False)
    if max_points is not None:
        body["max_points"] = max_points
    key = None if new else (idempotency_key or _derived_key(body))
    with _client(url, api_key) as client:
        try:
            batch, replayed = client.post("/v1/batches", body, idempotency_key=key)
        except ApiError as exc:
            _fail(exc, lines)
        if replayed:
            err.print(f"already submitted as {batch['id']} (pass --new to submit it again)")
        else:
            err.print(f"submitted {batch['id']} with {batch['total']} jobs")
        _finish_batch(
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
    with _client(url, api_key) as client:
        batch = _call(lambda: client.get(f"/v1/batches/{batch_id}"))
    _print_batch(batch, as_json=as_json)


@batch_app.command("ls")
def batch_ls(
    status: Annotated[str | None, typer.Option(help="running, completed or cancelled.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=500)] = 20,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List batches, newest first."""
    with _client(url, api_key) as client:
        page = _call(lambda: client.get("/v1/batches", status=status, limit=limit))
    if as_json:
        _print_json(page["data"])
        return
    table = _table("id", "status", "done", "points", "created")
    for batch in page["data"]:
        counts = batch["counts"]
        done = sum(counts.get(status, 0) for status in FINISHED)
        failed = done - counts.get("succeeded", 0)
        table.add_row(
            batch["id"],
            batch["status"],
            f"{done}/{batch['total']}" + (f" ({failed} not ok)" if failed else ""),
            "" if batch["cost_points"] is None else str(batch["cost_points"]),
            _short_time(batch["created_at"]),
        )
    out.print(table)


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
    _check_template(name)
    with _client(url, api_key) as client:
        batch = _call(lambda: client.get(f"/v1/batches/{batch_id}"))
        _finish_batch(
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
    _check_template(name)
    with _client(url, api_key) as client:
        jobs = _call(lambda: list(client.pages(f"/v1/batches/{batch_id}/jobs", limit=500)))
        if _download(client, jobs, directory, name):
            raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)


@batch_app.command("cancel")
def batch_cancel(
    batch_id: Annotated[str, typer.Argument(help="bat_…")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Cancel a batch's queued jobs (running ones finish)."""
    with _client(url, api_key) as client:
        batch, _ = _call(lambda: client.post(f"/v1/batches/{batch_id}/cancel"))
    _print_batch(batch, as_json=as_json)


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
    _check_template(name)
    with _client(url, api_key) as client:
        batch, _ = _call(lambda: client.post(f"/v1/batches/{batch_id}/retry"))
        err.print(f"re-queued {batch['retried']} jobs")
        _finish_batch(
            client,
            batch,
            wait=wait,
            download=download,
            name=name,
            interval=interval,
            timeout=timeout,
            as_json=as_json,
        )


@jobs_app.command("ls")
def jobs_ls(
    status: Annotated[list[str] | None, typer.Option(help="Only these statuses.")] = None,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    provider: Annotated[str | None, typer.Option(help="Only this provider.")] = None,
    batch: Annotated[str | None, typer.Option("--batch", help="Only this batch's.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.", min=1, max=500)] = 20,
    every: Annotated[bool, typer.Option("--all", help="Follow pages to the end.")] = False,
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List jobs, newest first."""
    params = {"status": status, "model": model, "provider": provider, "batch_id": batch}
    with _client(url, api_key) as client:
        if every:
            jobs = _call(lambda: list(client.pages("/v1/jobs", limit=500, **params)))
        else:
            jobs = _call(lambda: client.get("/v1/jobs", limit=limit, **params)["data"])
    if as_json:
        for job in jobs:
            out.print(json.dumps(job), markup=False, highlight=False, soft_wrap=True)
        return
    table = _table("id", "status", "model", "points", "created")
    for job in jobs:
        cost = "" if job["cost_points"] is None else str(job["cost_points"])
        model = job["model"] + ("" if job["action"] == "generate" else f" {job['action']}")
        table.add_row(job["id"], job["status"], model, cost, _short_time(job["created_at"]))
    out.print(table)


@jobs_app.command("show")
def jobs_show(
    job_id: Annotated[str, typer.Argument(help="job_…")],
    as_json: JsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Show one job: status, result URLs, cost, error."""
    with _client(url, api_key) as client:
        job = _call(lambda: client.get(f"/v1/jobs/{job_id}"))
    if as_json:
        _print_json(job)
        return
    out.print(_summary(job), markup=False, highlight=False)
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
    with _client(url, api_key) as client:
        events = _call(lambda: list(client.pages(f"/v1/jobs/{job_id}/events", limit=500)))
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
    with _client(url, api_key) as client:
        job, _ = _call(lambda: client.post(f"/v1/jobs/{job_id}/cancel"))
    out.print(_summary(job), markup=False, highlight=False)


def _table(*columns: str) -> Table:
    """A plain table whose first column (an id) is never cut: ids are what users copy."""
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(columns[0], no_wrap=True, min_width=30)
    for column in columns[1:]:
        table.add_column(column, overflow="fold")
    return table


def _short_time(rfc3339: str) -> str:
    """``2026-12-01T09:10:47.376207Z`` → ``2026-12-01 09:10:47``."""
    return rfc3339.replace("T", " ")[:19]


def _call(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except ApiError as exc:
        _fail(exc)
