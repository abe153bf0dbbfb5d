"""`make run` again right after Ctrl-C: the port check must not mistake the last run's TIME-WAIT
sockets for a server, and `make run ARGS=…` hands its options to `mcjobs up`."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from cli.up import port_free

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        yield server
    finally:
        server.close()


def _time_wait_on(port: int) -> bool:
    return any(
        c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT
        for c in psutil.net_connections(kind="tcp4")
    )


def test_a_port_held_only_by_time_wait_sockets_counts_as_free(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    # The server side closes first, as a stopped Redis does: its end waits in TIME-WAIT.
    accepted.close()
    client.recv(1)
    client.close()
    listener.close()
    assert _time_wait_on(port)

    assert port_free(port)


def test_a_port_with_a_live_server_is_taken(listener: socket.socket) -> None:
    assert not port_free(listener.getsockname()[1])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_passes_args_through_to_mcjobs_up() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "run", "ARGS=--redis-port=6400 --api-port=8001"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "mcjobs up --redis-port=6400 --api-port=8001" in dry_run.stdout
