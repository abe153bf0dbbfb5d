"""Commands for API users (`submit`, `batch …`, `jobs …`): they talk to the API over HTTP.

The API is `MCJOBS_URL` (default http://127.0.0.1:8000) and the key `MCJOBS_API_KEY`; both can
be given as `--url` / `--api-key`. Results go to stdout, progress and errors to stderr.

Exit codes: see `cli.console`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cli.batch_cmds import batch_app, save_results
from cli.console import (
    EXIT_NOT_ALL_SUCCEEDED,
    EXIT_TIMED_OUT,
    connect,
    err,
    fail,
    out,
    print_json,
    summary,
)
from cli.download import result_urls
from cli.flags import (
    ActionOpt,
    DeadlineOpt,
    DownloadOpt,
    IntervalOpt,
    JsonOpt,
    KeyOpt,
    MetaOpt,
    ModelOpt,
    NameOpt,
    ParamOpt,
    PriorityOpt,
    TimeoutOpt,
    UrlOpt,
    WaitOpt,
    WebhookOpt,
    check_template,
    common_fields,
    parse_source,
)
from cli.http import ApiError
from cli.jobs_cmds import jobs_app
from cli.progress import WaitTimedOut, wait_for_job


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.add_typer(batch_app, name="batch")
    app.add_typer(jobs_app, name="jobs")


def submit(
    model: ModelOpt = None,
    prompt: Annotated[
        str | None, typer.Option("--prompt", metavar="TEXT", help="The prompt.")
    ] = None,
    action: ActionOpt = None,
    param: ParamOpt = None,
    image: Annotated[
        list[str] | None,
        typer.Option("--image", metavar="URL", help="A reference image URL; repeatable."),
    ] = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source", metavar="JOB_ID[:TILE]", help="Follow-up of a job, e.g. job_…:2 to split."
        ),
    ] = None,
    webhook_url: WebhookOpt = None,
    meta: MetaOpt = None,
    priority: PriorityOpt = None,
    deadline: DeadlineOpt = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", metavar="KEY", help="Retry-safe key for this request."),
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
    check_template(name)
    spec = common_fields(model, action, param, meta, priority, deadline)
    if prompt is not None:
        spec["prompt"] = prompt
    if image:
        spec["images"] = [{"url": item} for item in image]
    if source:
        spec["source"] = parse_source(source)
    if webhook_url:
        spec["webhook_url"] = webhook_url
    with connect(url, api_key) as client:
        try:
            job, _ = client.post("/v1/jobs", spec, idempotency_key=idempotency_key)
            if wait or download:
                job = wait_for_job(client, job["id"], interval=interval, timeout=timeout)
        except ApiError as exc:
            fail(exc)
        except WaitTimedOut as exc:
            err.print(str(exc))
            raise typer.Exit(EXIT_TIMED_OUT) from None
        if as_json:
            print_json(job)
        else:
            out.print(summary(job), markup=False, highlight=False)
            for file_url in result_urls(job):
                out.print(f"  {file_url}", markup=False, highlight=False)
        if download:
            save_results(client, [job], download, name)
    if (wait or download) and job["status"] != "succeeded":
        raise typer.Exit(EXIT_NOT_ALL_SUCCEEDED)
