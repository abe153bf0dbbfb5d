"""Operator commands: `mcjobs budget set|show` and `mcjobs reconcile-usage`."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer
from sqlalchemy import update

from cli.helptext import CommandGroup
from core.budget import estimate
from core.db import get_database
from core.settings import Settings, get_settings
from core.stats import UsageReconciliation, reconcile_usage
from core.submission import get_catalogue
from core.tables import ApiKey, utcnow
from metachat import MetaChatClient, UpstreamError, UsageRecord, make_http_client

budget_app = typer.Typer(
    cls=CommandGroup, help="Credit budgets of API keys (points of MetaChat credit)."
)

USAGE_PAGE_SIZE = 100


def register(app: typer.Typer) -> None:
    app.add_typer(budget_app, name="budget")
    app.command("reconcile-usage")(reconcile_usage_command)


@budget_app.command("set")
def set_budget(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")],
    daily: Annotated[
        int | None, typer.Option(min=0, help="Points per UTC day (jobs submitted that day).")
    ] = None,
    total: Annotated[int | None, typer.Option(min=0, help="Points over the key's life.")] = None,
    no_daily: Annotated[bool, typer.Option("--no-daily", help="Remove the daily limit.")] = False,
    no_total: Annotated[bool, typer.Option("--no-total", help="Remove the total limit.")] = False,
) -> None:
    """Set or remove a key's daily and total budgets; queued jobs past them fail."""
    if (daily is not None and no_daily) or (total is not None and no_total):
        raise typer.BadParameter("give a limit or remove it, not both")
    changes: dict[str, int | None] = {}
    if daily is not None or no_daily:
        changes["max_points_daily"] = daily
    if total is not None or no_total:
        changes["max_points_total"] = total
    if not changes:
        raise typer.BadParameter(
            "nothing to change: give --daily, --total, --no-daily or --no-total"
        )
    with get_database().session() as session:
        found = session.execute(
            update(ApiKey).where(ApiKey.id == key_id).values(**changes).returning(ApiKey.id)
        ).scalar_one_or_none()
    if found is None:
        typer.echo(f"no key {key_id}", err=True)
        raise typer.Exit(1)
    show_budget(key_id)


@budget_app.command("show")
def show_budget(key_id: Annotated[str, typer.Argument(help="The key's id (key_…).")]) -> None:
    """A key's limits and what is left of them now."""
    with get_database().read_session() as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            typer.echo(f"no key {key_id}", err=True)
            raise typer.Exit(1)
        left = estimate(session, key, []).remaining
        limits = {"daily": key.max_points_daily, "total": key.max_points_total}
    typer.echo(f"key:    {key.id} ({key.name})")
    for kind, limit in limits.items():
        shown = "no limit" if limit is None else f"{limit:,} points, {left[kind]:,} left"
        typer.echo(f"{kind + ':':<7} {shown}")


def reconcile_usage_command(
    day: Annotated[
        str | None, typer.Option(help="UTC day to compare, YYYY-MM-DD (default: yesterday).")
    ] = None,
    max_pages: Annotated[int, typer.Option(min=1, help="Most usage pages to read.")] = 200,
) -> None:
    """Compare the points recorded per job with MetaChat's usage records for one UTC day.

    Exits 1 when they disagree, listing the tasks that differ.
    """
    try:
        chosen = dt.date.fromisoformat(day) if day else (utcnow() - dt.timedelta(days=1)).date()
    except ValueError:
        raise typer.BadParameter("expected YYYY-MM-DD", param_hint="--day") from None
    settings = get_settings()
    try:
        records = asyncio.run(_usage_around(settings, chosen, max_pages=max_pages))
    except UpstreamError as exc:
        typer.echo(f"MetaChat's usage records could not be read: {exc}", err=True)
        raise typer.Exit(2) from None
    with get_database().read_session() as session:
        report = reconcile_usage(session, records, day=chosen)
    _print_report(report)
    if not report.agrees:
        raise typer.Exit(1)


async def _usage_around(settings: Settings, day: dt.date, *, max_pages: int) -> list[UsageRecord]:
    """Usage records from now back to the day before `day` (pages come newest first)."""
    oldest_wanted = dt.datetime.combine(day - dt.timedelta(days=1), dt.time(), dt.UTC)
    api_key, app_id = settings.metachat_api_key, settings.metachat_app_id
    records: list[UsageRecord] = []
    async with make_http_client(
        connect_timeout=settings.metachat_connect_timeout,
        read_timeout=settings.metachat_read_timeout,
    ) as http:
        client = MetaChatClient(
            http,
            get_catalogue(settings.metachat_catalogue_overrides),
            base_url=settings.metachat_base_url,
            api_key=api_key.get_secret_value() if api_key is not None else None,
            app_id=app_id.get_secret_value() if app_id is not None else None,
        )
        for page in range(1, max_pages + 1):
            chunk = await client.usage_records(page=page, size=USAGE_PAGE_SIZE)
            records.extend(chunk)
            dated = [r.created_at for r in chunk if r.created_at is not None]
            if len(chunk) < USAGE_PAGE_SIZE or (dated and min(dated) < oldest_wanted):
                break
    return records


def _print_report(report: UsageReconciliation) -> None:
    typer.echo(f"day:              {report.day.isoformat()} (UTC)")
    typer.echo(f"recorded here:    {report.recorded_points:,} points")
    typer.echo(f"MetaChat charged: {report.upstream_points:,} points")
    typer.echo(f"difference:       {report.difference:+,} points")
    typer.echo(f"tasks matched:    {report.matched:,}")
    sections = (
        ("charged but not recorded here", report.unrecorded),
        ("recorded here but not in MetaChat's records", report.missing_upstream),
        ("points differ", report.mismatched),
    )
    for title, rows in sections:
        if not rows:
            continue
        typer.echo(f"{title}: {len(rows)}")
        for row in rows[:50]:
            typer.echo(
                f"  task {row.task_id}  job {row.job_id or '-'}  "
                f"here {row.recorded if row.recorded is not None else '-'}  "
                f"MetaChat {row.upstream if row.upstream is not None else '-'}"
            )
    typer.echo("agrees" if report.agrees else "DISAGREES")
