"""Service processes: `api`, `worker`, `beat`, `sim`, `migrate`."""

from __future__ import annotations

from typing import Annotated

import typer

from mcjobs.core.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("api")(api)
    app.command("worker")(worker)
    app.command("beat")(beat)
    app.command("sim")(sim)
    app.command("migrate")(migrate)


def api(
    port: Annotated[int | None, typer.Option(help="Port to listen on [API_PORT].")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [API_HOST].")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
) -> None:
    """Serve the HTTP API (and the dashboard)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "mcjobs.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level="info",
        access_log=False,
    )


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default: CPUs).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker: the submit, poll, maintenance and deliver pumps."""
    from mcjobs.worker.runner import run_worker

    run_worker(concurrency=concurrency, loglevel=loglevel)


def beat(
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run Celery beat, which ticks every pump each second. Run exactly one."""
    from mcjobs.worker.runner import run_beat

    run_beat(loglevel=loglevel)


def sim(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same outcomes.")] = 0,
    profile: Annotated[
        str, typer.Option(help="Timing profile: realistic, fast or instant.")
    ] = "realistic",
) -> None:
    """Run the MetaChat simulator (stands in for MetaChat when no key is set)."""
    from mcjobs.sim import run_sim

    run_sim(port=port, host=host, seed=seed, profile=profile)


def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the database schema (DATABASE_URL)."""
    from mcjobs.core.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision)
    typer.echo(f"database at revision {revision}")
