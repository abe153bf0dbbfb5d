"""What the real server process (`mcjobs api`) does with hostile requests: oversized and endless
headers are refused without growing the process, and a fault logs an error id, not the request."""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from core.db import Database
from tests.support.api_process import ApiProcess, api_process

MIB = 1024 * 1024


@pytest.fixture
def server(sqlite_db_url: str, redis_url: str, tmp_path: Path) -> Iterator[ApiProcess]:
    # the HTTP layer is the same on either database
    with api_process(sqlite_db_url, redis_url, tmp_path) as running:
        yield running


def _peak_rss_bytes(pid: int) -> int:
    """The process's peak resident size so far (VmHWM): a spike shows even once freed."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) * 1024


def _send_head(port: int, head: bytes, *, chunk: int = 64 * 1024) -> bytes:
    """Send a request head in chunks while reading whatever the server answers; the server may
    hang up before it all went out. An unfinished head is followed by the end of our sending
    side. Returns the answer (empty if the server only closed)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    answer = bytearray()

    def read() -> None:
        try:
            while data := sock.recv(65536):
                answer.extend(data)
        except OSError:
            pass

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for start in range(0, len(head), chunk):
            sock.sendall(head[start : start + chunk])
        if not head.endswith(b"\r\n\r\n"):
            sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # refused mid-way: the server stopped reading
    reader.join(timeout=60)
    sock.close()
    return bytes(answer)


def _status(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


def _head(header_bytes: int, *, terminated: bool = True) -> bytes:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nX-Filler: "
    head += b"a" * header_bytes
    return head + (b"\r\n\r\n" if terminated else b"")


def test_an_ordinary_large_header_is_still_served(server: ApiProcess) -> None:
    assert _status(_send_head(server.port, _head(16 * 1024))) == 200


def test_an_eight_megabyte_header_is_refused(server: ApiProcess) -> None:
    answer = _send_head(server.port, _head(8 * MIB))

    assert _status(answer) in (400, 431, None), answer[:200]
    assert _status(answer) != 200
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def test_an_endless_header_does_not_grow_the_process(server: ApiProcess) -> None:
    httpx.get(f"{server.base_url}/healthz")
    before = _peak_rss_bytes(server.process.pid)

    answer = _send_head(server.port, _head(64 * MIB, terminated=False))

    grown = _peak_rss_bytes(server.process.pid) - before
    assert grown < 16 * MIB, f"the API grew by {grown / MIB:.0f} MiB"
    assert _status(answer) in (400, 431, None)
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200


def test_a_fault_logs_its_error_id_and_type_but_no_request_data(
    pg_db: Database, redis_url: str, tmp_path: Path
) -> None:
    marker = "job_0secretmarker77"
    with api_process(pg_db.url, redis_url, tmp_path) as running:
        api_key = running.new_key(pg_db)
        engine = create_engine(pg_db.url)
        with engine.begin() as connection:  # every read of jobs now fails inside the database
            connection.execute(text("ALTER TABLE jobs RENAME TO jobs_elsewhere"))
        engine.dispose()

        auth = {"Authorization": f"Bearer {api_key}"}
        responses = [
            httpx.get(f"{running.base_url}/v1/jobs/{marker}", headers=auth),
            httpx.get(f"{running.base_url}/v1/jobs", params={"model": "secretmodel"}, headers=auth),
        ]
        log = running.log()

    for response in responses:
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        found = re.search(r"error id ([0-9a-f]{16})", response.json()["detail"])
        assert found, response.json()
        assert f"unexpected error {found.group(1)}: ProgrammingError" in log
        assert marker not in response.text
    for leaked in (marker, "secretmodel", api_key, "Traceback", "SELECT", "jobs_elsewhere"):
        assert leaked not in log, f"{leaked!r} is in the log"
