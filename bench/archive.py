"""Archive throughput: files/s, MB/s and CPU per file copied into the local store and into an
S3-compatible server.

A file server child process on 127.0.0.1 stands in for upstream's CDN: it serves one PNG
padded to ``FILE_BYTES`` at every path. Succeeded jobs (one image each) are written straight
into a fresh PostgreSQL database; then the archive pump (`worker.archive.run_archive_pump`,
the worker's own code, ``ARCHIVE_CONCURRENCY`` copies at a time) runs in this process until
every job is archived. Wall time and this process's CPU (obstore's I/O threads included) are
measured over that run. The S3 target is moto's server mode in a child process: its CPU is
shown apart, and since moto is a Python emulator its speed bounds the S3 figure, which is
therefore a floor, not what AWS or MinIO would give.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import psutil
from sqlalchemy import Table, func, select

from bench.report import Section, cpu_model, fmt, prose, table
from bench.stack import fresh_postgres
from core import ids
from core.db import Database
from core.keys import create_api_key
from core.settings import Settings
from core.storage import open_storage
from core.tables import SUCCEEDED, Job, utcnow
from core.transitions import archive_pending
from worker.archive import ArchiveContext, make_download_client, run_archive_pump

FILE_BYTES = 1024 * 1024
BUCKET = "mcjobs-bench"
CONCURRENCY = 8

FILE_SERVER = """
import http.server, struct, sys, zlib
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
row = b"\\x00" + b"\\x20\\x40\\x60" * 64
png = (b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
       + chunk(b"IDAT", zlib.compress(row * 64)) + chunk(b"IEND", b""))
body = png + b"\\x00" * (int(sys.argv[2]) - len(png))
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
s.daemon_threads = True
s.serve_forever()
"""


@dataclass(frozen=True)
class ArchiveRun:
    target: str
    files: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float | None

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.files * FILE_BYTES / 1e6 / self.seconds

    @property
    def cpu_ms_per_file(self) -> float:
        return 1000 * self.cpu_seconds / self.files


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(method: str, url: str, process: subprocess.Popen[bytes]) -> None:
    """Until ``method url`` answers 2xx (for moto, a PUT of the bucket creates it)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited")
        try:
            if httpx.request(method, url, timeout=2).is_success:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@contextmanager
def _child(argv: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _seed(db: Database, origin: str, files: int) -> None:
    with db.session() as session:
        key = create_api_key(session, name="bench-archive")
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for n, job_id in enumerate(ids.new_ids(ids.JOB, files)):
        rows.append(
            {
                "id": job_id,
                "api_key_id": key.id,
                "status": SUCCEEDED,
                "provider": "flux",
                "model": "flux-2-pro",
                "action": "generate",
                "prompt": "bench",
                "params": {},
                "images": [],
                "priority": 0,
                "attempts": 1,
                "polls": 1,
                "progress": 100,
                "created_at": now,
                "updated_at": now,
                "finished_at": now,
                "result": {"image_urls": [f"{origin}/{n}.png"], "video_url": None},
                **archive_pending(now),
            }
        )
    with db.session() as session:
        session.execute(cast(Table, Job.__table__).insert(), rows)


def _archive(db: Database, settings: Settings, files: int, server_pid: int | None) -> ArchiveRun:
    async def go() -> None:
        ctx = ArchiveContext(
            db=db,
            settings=settings,
            store=open_storage(settings),
            http=make_download_client(settings),
            owner="bench:1",
        )
        try:
            while True:
                report = await run_archive_pump(ctx, window_seconds=3600)
                if report.jobs == 0:
                    return
        finally:
            await ctx.http.aclose()
            ctx.offload.close()

    me = psutil.Process()
    server = psutil.Process(server_pid) if server_pid else None
    cpu_before = sum(me.cpu_times()[:2])
    server_before = sum(server.cpu_times()[:2]) if server else 0.0
    started = time.perf_counter()
    asyncio.run(go())
    seconds = time.perf_counter() - started
    cpu = sum(me.cpu_times()[:2]) - cpu_before
    server_cpu = sum(server.cpu_times()[:2]) - server_before if server else None
    with db.read_session() as session:
        done = session.scalar(select(func.count()).where(Job.archive_state == "done")) or 0
    if done != files:
        raise RuntimeError(f"only {done} of {files} jobs archived")
    target = settings.storage_url.split(":", 1)[0] if "://" in settings.storage_url else "local"
    return ArchiveRun(target, files, seconds, cpu, server_cpu)


def run_archive(*, files: int, s3_files: int, progress: Callable[[str], None]) -> Section:
    load_before = os.getloadavg()[0]
    file_port = _free_port()
    origin = f"http://127.0.0.1:{file_port}"
    runs: list[ArchiveRun] = []
    with _child([sys.executable, "-c", FILE_SERVER, str(file_port), str(FILE_BYTES)]) as server:
        _wait_http("GET", f"{origin}/probe.png", server)
        with fresh_postgres() as url, tempfile.TemporaryDirectory() as root:
            db = Database(url)
            _seed(db, origin, files)
            settings = _settings(url, storage_url=str(Path(root) / "files"))
            progress(f"local store: {files} files of {FILE_BYTES // 1024} KiB")
            runs.append(_archive(db, settings, files, None))
            db.dispose()
        moto_port = _free_port()
        endpoint = f"http://127.0.0.1:{moto_port}"
        moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)]
        with _child(moto) as s3, fresh_postgres() as url:
            _wait_http("PUT", f"{endpoint}/{BUCKET}", s3)
            db = Database(url)
            _seed(db, origin, s3_files)
            settings = _settings(
                url,
                storage_url=f"s3://{BUCKET}/files",
                storage_s3_endpoint=endpoint,
                storage_s3_region="us-east-1",
                storage_s3_access_key_id="bench",
                storage_s3_secret_access_key="bench",
            )
            progress(f"S3 (moto server): {s3_files} files")
            runs.append(_archive(db, settings, s3_files, s3.pid))
            db.dispose()
    for run in runs:
        progress(
            f"{run.target}: {run.files_per_second:.1f} files/s, {run.mb_per_second:.1f} MB/s, "
            f"{run.cpu_ms_per_file:.1f} CPU ms/file"
        )
    machine = (
        f"{cpu_model()}, {os.cpu_count()} CPUs; 1-minute load average {load_before:.1f} "
        f"before the run and {os.getloadavg()[0]:.1f} after it (the machine is shared)"
    )
    return archive_section(runs, machine=machine)


def _settings(database_url: str, **overrides: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=database_url,
        archive_concurrency=CONCURRENCY,
        archive_batch_size=50,
        archive_timeout_seconds=60,
        **overrides,
    )


def archive_section(runs: list[ArchiveRun], *, machine: str = "") -> Section:
    rows = [
        [
            "local disk" if run.target == "local" else "S3 (moto server)",
            str(run.files),
            fmt(run.seconds, 1),
            fmt(run.files_per_second, 1),
            fmt(run.mb_per_second, 1),
            fmt(run.cpu_ms_per_file, 1),
            "—" if run.server_cpu_seconds is None else fmt(run.server_cpu_seconds, 1),
        ]
        for run in runs
    ]
    body = "\n\n".join(
        [
            prose(
                f"The archive pump copying succeeded jobs' outputs ({FILE_BYTES // 1024} KiB "
                f"PNG files, one per job) from a file server on 127.0.0.1 into each store, "
                f"{CONCURRENCY} copies at a time, 50 jobs a round, one process. *CPU per file* "
                "is this process's user+system time (the pump, its database thread, obstore's "
                "I/O threads) over the run divided by the files; the file server's and "
                "moto's CPU are not in it (moto's is shown apart). moto is a Python emulator "
                "that keeps objects in memory: its own CPU bounds the S3 row, so that row is "
                "a floor for a real S3-compatible store. The file server is a Python "
                "process on the same two CPUs, so it competes with the pump for them."
                + (f" Measured on {machine}." if machine else "")
            ),
            table(
                [
                    "target",
                    "files",
                    "seconds",
                    "files/s",
                    "MB/s",
                    "CPU ms/file",
                    "server CPU s",
                ],
                rows,
            ),
        ]
    )
    return Section("archive", "Archive: copying results into our storage", body)


__all__ = ["ArchiveRun", "archive_section", "run_archive"]
