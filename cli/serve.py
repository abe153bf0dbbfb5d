"""Service processes: `api`, `worker`, `beat`, `sim`, `migrate`."""

from __future__ import annotations

from typing import Annotated

import typer

from core.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("api")(api)
    app.command("worker")(worker)
    app.command("beat")(beat)
    app.command("sim")(sim)
    app.command("migrate")(migrate)
    app.command("flower")(flower)
    app.add_typer(health_app, name="healthcheck")


health_app = typer.Typer(help="Container health checks: exit 0 when healthy.", no_args_is_help=True)


def api(
    port: Annotated[int | None, typer.Option(help="Port to listen on [API_PORT].")] = None,
    host: Annotated[str | None, typer.Option(help="Address to bind [API_HOST].")] = None,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.")] = 1,
    access_log: Annotated[
        bool, typer.Option(help="Log one line per request (method, path, status).")
    ] = False,
) -> None:
    """Serve the HTTP API (and the dashboard)."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers,
        log_level="info",
        access_log=access_log,
        # h11, not httptools: h11 caps the bytes it buffers for an unfinished request line and
        # headers, so an endless or huge header is refused (400) instead of growing the process.
        http="h11",
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="Worker processes (default: CPUs).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
    hostname: Annotated[
        str | None,
        typer.Option(
            help="Celery node name, unique per node (default: mcjobs-<pid>@<host>; "
            "%h, %n and %d expand as in Celery)."
        ),
    ] = None,
) -> None:
    """Run a Celery worker: the submit, poll, maintenance and deliver pumps. Run as many as
    you like, on as many machines: each claims its own rows."""
    from worker.runner import run_worker

    run_worker(concurrency=concurrency, loglevel=loglevel, hostname=hostname)


def beat(
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run Celery beat, which ticks every pump each second. Run one; a second one by mistake
    only doubles the ticks (docs/scaling.md)."""
    from worker.runner import run_beat

    run_beat(loglevel=loglevel)


def sim(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same outcomes.")] = 0,
    profile: Annotated[
        str, typer.Option(help="Profile: realistic, fast, instant, flaky, legacy or forbidden.")
    ] = "realistic",
) -> None:
    """Run the MetaChat simulator (stands in for MetaChat when no key is set)."""
    from sim import run_sim

    run_sim(port=port, host=host, seed=seed, profile=profile)


def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade the database schema (DATABASE_URL)."""
    from core.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url, revision, prepared_statements=settings.db_prepared_statements)
    typer.echo(f"database at revision {revision}")


def flower(
    port: Annotated[int, typer.Option(help="Port for the Flower UI.")] = 5555,
) -> None:
    """Run Flower (Celery's monitor) against this service's broker; needs the `flower` extra."""
    import os
    import sys

    os.execvp(  # noqa: S606 (replace this process with Flower)
        sys.executable,
        [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "worker.celery_app:app",
            "flower",
            f"--port={port}",
        ],
    )


@health_app.command("http")
def health_http(url: Annotated[str, typer.Argument(help="URL that must answer 2xx.")]) -> None:
    """Healthy when URL answers 2xx within 5 s."""
    import httpx

    try:
        ok = httpx.get(url, timeout=5.0).is_success
    except httpx.HTTPError:
        ok = False
    raise typer.Exit(0 if ok else 1)


@health_app.command("redis")
def health_redis() -> None:
    """Healthy when REDIS_URL answers PING."""
    import redis

    try:
        ok = bool(redis.Redis.from_url(get_settings().redis_url, socket_timeout=5).ping())
    except redis.RedisError:
        ok = False
    raise typer.Exit(0 if ok else 1)


@health_app.command("broker")
def health_broker() -> None:
    """Healthy when Celery's broker (BROKER_URL, else REDIS_URL) connects."""
    from worker.celery_app import app as celery_app

    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
        ok = True
    except Exception:  # any transport's connection error means "not healthy"
        ok = False
    raise typer.Exit(0 if ok else 1)


@health_app.command("worker")
def health_worker(
    node: Annotated[
        str | None,
        typer.Option(help="Node name to ping (default: any node named …@<this host>)."),
    ] = None,
) -> None:
    """Healthy when this host's Celery worker answers a ping."""
    import socket

    from worker.celery_app import app as celery_app

    if node is not None:
        replies = celery_app.control.ping(destination=[node], timeout=5.0)
    else:
        host = socket.gethostname()
        replies = [
            reply
            for reply in celery_app.control.ping(timeout=5.0)
            for name in reply
            if name.endswith(f"@{host}")
        ]
    raise typer.Exit(0 if replies else 1)
