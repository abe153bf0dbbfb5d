"""The processes a benchmark runs against: a fresh PostgreSQL database, a private Redis, and
`mcjobs` (or reference) subprocesses, all on 127.0.0.1 and all stopped on exit.

`Stack` is a context manager; every process it starts lives in its own session so it can be
stopped as a group, and logs to a file under the stack's work directory (kept when something
fails, so the cause can be read).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import psycopg
import redis

from tests.support.services import RedisServer, free_port, start_embedded_redis

DEFAULT_PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SIM_API_KEY = "sim-bench-key"  # the simulator accepts any bearer key; not a secret
MCJOBS = (sys.executable, "-m", "cli")
REPO_ROOT = Path(__file__).resolve().parent.parent


class StackError(RuntimeError):
    """A process did not start, or exited while it was needed."""


def wait_for(
    condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until it is truthy; `StackError` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except Exception:  # the thing waited on may not exist yet
            pass
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def psycopg_url(sqlalchemy_url: str) -> str:
    """The libpq spelling of a ``postgresql+psycopg://`` URL."""
    return sqlalchemy_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextmanager
def fresh_postgres(admin_url: str = DEFAULT_PG_ADMIN, *, migrate: bool = True) -> Iterator[str]:
    """A new PostgreSQL database (migrated to head unless told not to), dropped afterwards.

    Yields its SQLAlchemy URL (``postgresql+psycopg://…``).
    """
    name = f"mcjobs_bench_{secrets.token_hex(5)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = admin_url.rsplit("/", 1)[0]
    url = f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)
    try:
        if migrate:
            from core.migrate import upgrade

            upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_versions(database_url: str, redis_url: str) -> dict[str, str]:
    """PostgreSQL and Redis server versions, as the servers report them."""
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(redis_url)
    try:
        redis_version = str(client.info("server")["redis_version"])
    finally:
        client.close()
    return {"postgresql": str(row[0]) if row else "?", "redis": redis_version}


@dataclass
class Service:
    """One subprocess of the stack."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None

    @property
    def pid(self) -> int:
        if self.process is None:
            raise StackError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> Service:
        log = self.log_path.open("ab")
        try:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process group this service leads (it and its children)."""
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``timeout``."""
        if self.process is None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.process.wait(timeout=10)
        # pool children may outlive a killed parent for a moment; make sure none is left
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def kill(self) -> None:
        """SIGKILL the whole group at once: no warm shutdown, no acks, no cleanup."""
        if self.process is None:
            return
        self.signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Stack:
    """Redis, a database URL and named services; `close` stops them in reverse order."""

    database_url: str
    redis_url: str | None = None
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcjobs-bench-")))
    services: dict[str, Service] = field(default_factory=dict)
    redis_server: RedisServer | None = None
    keep_workdir: bool = False

    def __enter__(self) -> Stack:
        if self.redis_url is None:
            self.redis_server = start_embedded_redis()
            self.redis_url = self.redis_server.url
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(failed=exc is not None)

    @property
    def redis(self) -> str:
        if self.redis_url is None:
            raise StackError("the stack has no Redis yet")
        return self.redis_url

    def restart_redis(self, *, flush: bool = True) -> None:
        """FLUSHALL (optionally) and restart the private Redis on the same port."""
        if self.redis_server is None or self.redis_server.process is None:
            raise StackError("only a private embedded Redis may be restarted")
        if flush:
            client = redis.Redis.from_url(self.redis)
            client.flushall()
            client.close()
        port = int(self.redis.rsplit(":", 1)[1].split("/", 1)[0])
        self.redis_server.stop()
        self.redis_server = start_embedded_redis(port=port)

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment every service gets: this machine's plus the stack's URLs."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis,
                "PYTHONUNBUFFERED": "1",
                # services run in the work directory (no stray .env, beat files land there)
                "PYTHONPATH": str(REPO_ROOT),
            }
        )
        env.update(extra or {})
        return env

    def add(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> Service:
        """Start a service (not waiting for it to be ready)."""
        if name in self.services and self.services[name].alive():
            raise StackError(f"{name} is already running")
        service = Service(
            name=name,
            argv=argv,
            env=self.env(env),
            log_path=self.workdir / f"{name}.log",
            cwd=self.workdir,
            port=port,
        )
        self.services[name] = service.start()
        return service

    def restart(self, name: str, *, kill: bool = False) -> Service:
        """Stop (or SIGKILL) a service and start it again with the same command line."""
        old = self.services[name]
        if kill:
            old.kill()
        else:
            old.stop()
        fresh = Service(old.name, old.argv, old.env, old.log_path, old.cwd, port=old.port)
        self.services[name] = fresh.start()
        return fresh

    def wait_http(self, name: str, path: str, *, timeout: float = 60.0) -> None:
        """Wait until the service answers ``GET path`` with a 2xx; fail fast if it exits."""
        service = self.services[name]
        url = f"http://127.0.0.1:{service.port}{path}"

        def ready() -> bool:
            if not service.alive():
                raise_exit(service)
            try:
                return httpx.get(url, timeout=1.0).is_success
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout=timeout, what=f"{name} at {url}")

    def check_alive(self, *names: str) -> None:
        """`StackError` (with the log tail) if any named service has exited."""
        for name in names or tuple(self.services):
            service = self.services[name]
            if not service.alive():
                raise_exit(service)

    def close(self, *, failed: bool = False) -> None:
        for service in reversed(list(self.services.values())):
            service.stop()
        if self.redis_server is not None:
            self.redis_server.stop()
        if failed or self.keep_workdir:
            print(f"logs kept in {self.workdir}", file=sys.stderr)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # --- the project's own services -------------------------------------------------------

    def start_sim(self, *, profile: str, seed: int = 1, name: str = "sim") -> str:
        """`mcjobs sim`; returns its ``METACHAT_BASE_URL``."""
        port = free_port()
        argv = [*MCJOBS, "sim", "--port", str(port), "--seed", str(seed), "--profile", profile]
        self.add(name, argv, port=port)
        self.wait_http(name, "/_sim/health")
        return f"http://127.0.0.1:{port}/open/v1"

    def start_api(self, env: Mapping[str, str], *, name: str = "api") -> str:
        """`mcjobs api` on a free port; returns its base URL once ``/healthz`` answers."""
        port = self.services[name].port if name in self.services else free_port()
        assert port is not None
        self.add(name, [*MCJOBS, "api", "--port", str(port)], env=env, port=port)
        self.wait_http(name, "/healthz")
        return f"http://127.0.0.1:{port}"

    def start_worker(
        self, env: Mapping[str, str], *, concurrency: int = 2, name: str = "worker"
    ) -> Service:
        """`mcjobs worker --concurrency N` (not waiting: the pumps need no readiness check)."""
        argv = [*MCJOBS, "worker", "--concurrency", str(concurrency), "--loglevel", "WARNING"]
        return self.add(name, argv, env=env)

    def start_beat(self, env: Mapping[str, str], *, name: str = "beat") -> Service:
        """`mcjobs beat` (exactly one per stack)."""
        return self.add(name, [*MCJOBS, "beat", "--loglevel", "WARNING"], env=env)


def raise_exit(service: Service) -> None:
    code = service.process.poll() if service.process else None
    raise StackError(
        f"{service.name} exited with code {code}; last log lines:\n{service.log_tail()}"
    )


def create_api_key(stack: Stack, *, name: str = "bench", admin: bool = True) -> tuple[str, str]:
    """`mcjobs keys create`; returns (api key, webhook secret)."""
    argv = [*MCJOBS, "keys", "create", "--name", name]
    if admin:
        argv.append("--admin")
    out = subprocess.run(
        argv, env=stack.env(), capture_output=True, text=True, timeout=60, check=False
    )
    if out.returncode != 0:
        raise StackError(f"mcjobs keys create failed: {out.stderr.strip()}")
    values = {}
    for line in out.stdout.splitlines():
        label, _, value = line.partition(":")
        values[label.strip()] = value.strip()
    return values["api key"], values["webhook secret"]
