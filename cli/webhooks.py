"""`mcjobs webhooks …`: the delivery log, redelivery and a local signature-checking receiver.

`ls` and `redeliver` talk to the API over HTTP (`MCJOBS_URL`, `MCJOBS_API_KEY`); `listen` runs a
receiver that verifies signatures with the `standardwebhooks` library and prints each event.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from cli.console import connect, fail, print_json
from cli.flags import AllOpt, CursorOpt, KeyOpt, LimitOpt, ListJsonOpt, UrlOpt
from cli.helptext import CommandGroup
from cli.http import ApiError
from core.webhooks.listener import ReceivedEvent, RejectedRequest, WebhookListener

webhooks_app = typer.Typer(
    cls=CommandGroup,
    help="Webhook deliveries: the log, redelivery, and a local receiver.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("ls")
def list_deliveries(
    job_id: Annotated[
        str | None, typer.Option("--job-id", metavar="JOB_ID", help="Only this job's.")
    ] = None,
    batch_id: Annotated[
        str | None, typer.Option("--batch-id", metavar="BATCH_ID", help="Only this batch's.")
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(metavar="STATE", help="pending, succeeded or dead.", show_default=False),
    ] = None,
    limit: LimitOpt = 50,
    every: AllOpt = False,
    cursor: CursorOpt = None,
    as_json: ListJsonOpt = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """List webhook deliveries (newest first) with their last outcome."""
    params = {"job_id": job_id, "batch_id": batch_id, "state": state}
    with connect(url, api_key) as client:
        try:
            page = client.listing(
                "/v1/webhooks/deliveries", limit=limit, cursor=cursor, every=every, **params
            )
        except ApiError as exc:
            fail(exc)
    if as_json:
        print_json(page)
        return
    rows: list[dict[str, Any]] = page["data"]
    if not rows:
        typer.echo("no deliveries")
        return
    for row in rows:
        typer.echo(_delivery_line(row))


def _delivery_line(row: dict[str, Any]) -> str:
    subject = row.get("job_id") or row.get("batch_id") or "-"
    last = row.get("last_error") or (
        f"HTTP {row['last_status_code']}" if row.get("last_status_code") else ""
    )
    when = row.get("next_attempt_at") or row.get("delivered_at") or row.get("updated_at") or ""
    return (
        f"{row['id']}  {row['state']:<9}  {row['type']:<15}  {subject}  "
        f"attempts={row['attempts']}  {when}  {last}"
    ).rstrip()


@webhooks_app.command("redeliver")
def redeliver_delivery(
    delivery_id: Annotated[str, typer.Argument(help="The delivery id (msg_…, the webhook-id).")],
    url: UrlOpt = None,
    api_key: KeyOpt = None,
) -> None:
    """Queue a delivery again, under the same webhook-id, due now."""
    with connect(url, api_key) as client:
        try:
            row, _replayed = client.post(f"/v1/webhooks/deliveries/{delivery_id}/redeliver")
        except ApiError as exc:
            fail(exc)
    typer.echo(f"{row['id']} queued again ({row['state']}, due {row['next_attempt_at']})")


@webhooks_app.command("listen")
def listen(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8099,
    secret: Annotated[
        str,
        typer.Option(
            envvar="MCJOBS_WEBHOOK_SECRET",
            help="The API key's webhook secret (whsec_…) [MCJOBS_WEBHOOK_SECRET].",
            show_default=False,
        ),
    ] = "",
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    brief: Annotated[bool, typer.Option(help="One line per event, without the body.")] = False,
) -> None:
    """Receive webhooks locally: verify each signature (401 if bad) and print the event."""
    if not secret:
        typer.echo("pass --secret whsec_… (or set MCJOBS_WEBHOOK_SECRET)", err=True)
        raise typer.Exit(2)

    def on_event(event: ReceivedEvent) -> None:
        repeat = f"  (repeat #{event.seen})" if event.seen > 1 else ""
        typer.echo(f"{event.webhook_id}  {event.type}  {event.subject_id}  verified{repeat}")
        if not brief:
            typer.echo(json.dumps(event.body, indent=2, ensure_ascii=False))

    def on_reject(rejected: RejectedRequest) -> None:
        typer.echo(f"rejected POST {rejected.path}: {rejected.reason} (answered 401)", err=True)

    try:
        listener = WebhookListener(
            secret, host=host, port=port, on_event=on_event, on_reject=on_reject
        )
    except OSError as exc:
        typer.echo(f"cannot listen on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    except Exception:
        typer.echo("the secret is not a valid whsec_… webhook secret", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"listening on {listener.url} (Ctrl-C to stop)", err=True)
    try:
        listener.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
