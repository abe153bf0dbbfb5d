"""The services of a multi-node deployment, private to one test: a PgBouncer in transaction
pooling mode in front of the test's database, and a RabbitMQ vhost of its own.

Both skip the test with the reason when the service is missing, and both clean up after
themselves (the pgbouncer process is stopped, the vhost deleted with its queues).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.support.services import free_port
from tests.support.waiting import wait_until

RABBITMQ_HOST = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
RABBITMQ_PORT = int(os.environ.get("TEST_RABBITMQ_PORT", "5672"))
# pgbouncer refuses to run as root; it drops to this user instead
PGBOUNCER_USER = os.environ.get("TEST_PGBOUNCER_USER", "postgres")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(p).exists()), None
    )


def _pgbouncer_config(directory: Path, database_url: str, port: int, pool_size: int) -> Path:
    url = make_url(database_url)
    user = url.username or "postgres"
    users = directory / "users.txt"
    users.write_text(f'"{user}" ""\n')
    config = directory / "pgbouncer.ini"
    config.write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={url.host or '127.0.0.1'} port={url.port or 5432}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {users}",
                "pool_mode = transaction",
                f"admin_users = {user}",
                "max_client_conn = 1000",
                f"default_pool_size = {pool_size}",
                # psycopg sends no such parameters, but other drivers and tools do
                "ignore_startup_parameters = extra_float_digits,options",
                "",
            ]
        )
    )
    for path in (directory, users, config):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return config


@dataclass
class PgBouncer:
    """A running private PgBouncer: ``url`` is the database URL pointed at it."""

    url: str
    port: int
    pid: int
    user: str

    def stats(self) -> dict[str, int]:
        """``SHOW STATS`` for the pooled database: ``total_query_count``, ``total_xact_count``
        and the other counters since start (the admin console speaks only the simple query
        protocol, which psql uses)."""
        database = make_url(self.url).database
        out = subprocess.run(
            [
                *("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user),
                *("-d", "pgbouncer", "-A", "-F", "\t", "-P", "footer=off", "-c", "SHOW STATS"),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
        lines = out.stdout.splitlines()
        header = lines[0].split("\t")
        for line in lines[1:]:
            values = dict(zip(header, line.split("\t"), strict=False))
            if values.get("database") == database:
                return {k: int(v) for k, v in values.items() if v.lstrip("-").isdigit()}
        return {}


@contextmanager
def pgbouncer_server(database_url: str, *, pool_size: int = 10) -> Iterator[PgBouncer]:
    """A private PgBouncer (transaction pooling) in front of ``database_url``. Skips the test
    when Debian's ``pgbouncer`` is not installed."""
    binary = pgbouncer_binary()
    if binary is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    directory = Path(tempfile.mkdtemp(prefix="mcjobs-pgbouncer-"))
    port = free_port()
    config = _pgbouncer_config(directory, database_url, port, pool_size)
    command = [binary, str(config)]
    if os.geteuid() == 0:
        command[1:1] = ["-u", PGBOUNCER_USER]
    log = (directory / "pgbouncer.log").open("ab")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until(
            lambda: process.poll() is not None or _reachable("127.0.0.1", port),
            timeout=15,
            what="pgbouncer to listen",
        )
        if process.poll() is not None:
            raise RuntimeError(
                "pgbouncer did not start: " + (directory / "pgbouncer.log").read_text()
            )
        url = make_url(database_url)
        yield PgBouncer(
            url=url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False),
            port=port,
            pid=process.pid,
            user=url.username or "postgres",
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def pgbouncer(database_url: str, *, pool_size: int = 10) -> Iterator[str]:
    """`pgbouncer_server`, yielding only the pooled URL."""
    with pgbouncer_server(database_url, pool_size=pool_size) as server:
        yield server.url


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh RabbitMQ vhost for guest/guest: yields its ``amqp://`` broker URL; the vhost and
    everything in it are deleted afterwards. Skips when RabbitMQ or rabbitmqctl is missing."""
    if not _reachable(RABBITMQ_HOST, RABBITMQ_PORT):
        pytest.skip(f"RabbitMQ is not reachable at {RABBITMQ_HOST}:{RABBITMQ_PORT}")
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not installed: a private vhost cannot be made")
    vhost = f"mcjobs_t_{secrets.token_hex(6)}"
    try:
        _rabbitmqctl("add_vhost", vhost)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"rabbitmqctl cannot add a vhost here: {exc.stderr!r}")
    try:
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        _rabbitmqctl("delete_vhost", vhost)


def rabbitmq_queues(broker_url: str) -> set[str]:
    """The queue names in the vhost of ``broker_url``."""
    vhost = broker_url.rsplit("/", 1)[1]
    listed = subprocess.run(
        ["rabbitmqctl", "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return {line.strip() for line in listed.stdout.splitlines() if line.strip()}
