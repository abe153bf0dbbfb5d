"""Stores for the storage tests: a local directory, or a real S3-compatible server (moto's
server mode) started on 127.0.0.1 as a child process; and upstream file servers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from core import ids
from core.db import Database
from core.settings import Settings
from core.storage import ResultStore, open_storage
from core.tables import SUCCEEDED, Job, utcnow
from core.transitions import archive_pending
from sim.storage import mp4_bytes, png_bytes
from tests.support.services import free_port
from worker.archive import ArchiveContext
from worker.offload import Offload

BUCKET = "mcjobs-results"
S3_CREDENTIALS = {
    "storage_s3_region": "us-east-1",
    "storage_s3_access_key_id": "testing",
    "storage_s3_secret_access_key": "testing",
}


@dataclass(frozen=True)
class MotoServer:
    endpoint: str

    def settings(self, prefix: str = "files") -> dict[str, Any]:
        return {
            "storage_url": f"s3://{BUCKET}/{prefix}",
            "storage_s3_endpoint": self.endpoint,
            **S3_CREDENTIALS,
        }


@contextmanager
def moto_server() -> Iterator[MotoServer]:
    """``moto_server`` on a free port of 127.0.0.1 with one bucket; stopped afterwards."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                # moto checks no signature: a plain PUT creates the bucket
                if httpx.put(f"{endpoint}/{BUCKET}", timeout=2).status_code < 300:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start")
            time.sleep(0.1)
        yield MotoServer(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


PNG = png_bytes("task", "0.png", size=32)
MP4 = mp4_bytes("task")


def upstream_files(
    files: Mapping[str, tuple[int, str, bytes]],
) -> Callable[[httpx.Request], httpx.Response]:
    """A MockTransport handler: path → (status, content type, body); anything else 404s."""

    def handle(request: httpx.Request) -> httpx.Response:
        status, content_type, body = files.get(request.url.path, (404, "text/plain", b"gone"))
        return httpx.Response(status, headers={"content-type": content_type}, content=body)

    return handle


def archive_context(
    db: Database,
    settings: Settings,
    handler: Callable[[httpx.Request], httpx.Response] | None = None,
    *,
    http: httpx.AsyncClient | None = None,
) -> ArchiveContext:
    client = http or httpx.AsyncClient(
        transport=httpx.MockTransport(handler or upstream_files({})), follow_redirects=True
    )
    return ArchiveContext(
        db=db,
        settings=settings,
        store=open_storage(settings),
        http=client,
        owner="test:1",
        offload=Offload(),
    )


def succeeded_job(db: Database, api_key_id: str, result: dict[str, Any], **fields: Any) -> str:
    """A job that has just succeeded with ``result``, its outputs due for archiving."""
    now = utcnow()
    job_id = ids.new_id(ids.JOB)
    values: dict[str, Any] = {
        "id": job_id,
        "api_key_id": api_key_id,
        "provider": "flux",
        "model": "flux-2-pro",
        "action": "generate",
        "prompt": "a ceramic mug",
        "status": SUCCEEDED,
        "result": result,
        "finished_at": now,
        **archive_pending(now),
    }
    values.update(fields)
    with db.session() as session:
        session.add(Job(**values))
    return job_id


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def read_job(db: Database, job_id: str) -> Job:
    with db.read_session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def stored_bytes(store: ResultStore, key: str) -> bytes:
    return bytes(asyncio.run(store.get(key)))


class SlowFileServer:
    """A real HTTP server on 127.0.0.1 serving one PNG: it sends the first half, then holds
    the rest until ``release`` is set, so a copier can be killed mid-copy."""

    BODY = PNG + b"\0" * 200_000

    def __init__(self) -> None:
        import http.server
        import threading

        self.half_sent = threading.Event()
        self.release = threading.Event()
        self.requests = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests += 1
                body = server.BODY
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                half = len(body) // 2
                try:
                    self.wfile.write(body[:half])
                    self.wfile.flush()
                    server.half_sent.set()
                    server.release.wait(timeout=60)
                    self.wfile.write(body[half:])
                except OSError:
                    return  # the copier went away

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/slow.png"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
