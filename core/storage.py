"""Where result files live: one small async interface over `obstore`.

`STORAGE_URL` picks the backend. Unset (or a plain path, or ``file:///…``) keeps files on the
local disk under ``var/files``, so ``make run`` needs nothing; ``s3://bucket/prefix`` talks to
any S3-compatible store (AWS, MinIO, R2, …) with ``STORAGE_S3_*`` for the endpoint and
credentials, else the usual ``AWS_*`` environment. All I/O is `obstore`'s own async calls, so
nothing here blocks the event loop.

Keys are relative paths (``<job id>/<index>.<ext>``); the store adds its own prefix.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import LocalStore, S3Store

from core.settings import Settings

DEFAULT_LOCAL_ROOT = "var/files"
# streamed reads hand out chunks of about this size
STREAM_CHUNK_BYTES = 256 * 1024

EXTENSIONS = {
    "image/png": "png",
    "image/jpeg": "jpg",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/avif": "avif",
    "video/mp4": "mp4",
    "video/webm": "webm",
    "video/quicktime": "mov",
}


class StoredFileMissing(LookupError):
    """The store has no object under that key."""


@dataclass(frozen=True)
class StoredObject:
    """What a read knows before the body is consumed."""

    size: int
    content_type: str | None
    chunks: AsyncIterator[bytes]


def file_key(job_id: str, index: int, content_type: str) -> str:
    """The key of a job's ``index``-th output: stable, so a copy that is retried after a crash
    overwrites its own half-written object instead of leaving a second one behind."""
    extension = EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")
    return f"{job_id}/{index}.{extension}"


class ResultStore:
    """Put, read, delete and presign result files. One per process; safe to share across tasks
    on one event loop."""

    def __init__(self, store: LocalStore | S3Store, *, kind: str, description: str) -> None:
        self._store = store
        self.kind = kind  # "local" or "s3"
        # where the files are, with no credentials in it (logs, the dashboard)
        self.description = description

    @property
    def can_presign(self) -> bool:
        return self.kind == "s3"

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` under ``key``, replacing what was there."""
        await obstore.put_async(
            self._store, key, data, attributes=self._attributes(content_type), mode="overwrite"
        )

    async def put_stream(self, key: str, chunks: AsyncIterable[bytes], content_type: str) -> None:
        """Store a body that arrives in chunks (a copy from upstream), without holding it all
        in memory; large bodies go up as a multipart upload on S3."""
        await obstore.put_async(
            self._store,
            key,
            chunks,
            attributes=self._attributes(content_type),
            mode="overwrite",
        )

    async def get(self, key: str) -> bytes:
        """The whole object."""
        try:
            result = await obstore.get_async(self._store, key)
        except (NotFoundError, FileNotFoundError) as exc:
            raise StoredFileMissing(key) from exc
        return bytes(await result.bytes_async())

    async def stream(self, key: str) -> StoredObject:
        """The object's size, type and an async iterator over its bytes."""
        try:
            result = await obstore.get_async(self._store, key)
        except (NotFoundError, FileNotFoundError) as exc:
            raise StoredFileMissing(key) from exc
        content_type = result.attributes.get("Content-Type")
        return StoredObject(
            size=int(result.meta["size"]),
            content_type=str(content_type) if content_type else None,
            chunks=_chunks(result.stream(min_chunk_size=STREAM_CHUNK_BYTES)),
        )

    async def exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return False
        return True

    async def delete(self, key: str) -> None:
        """Remove ``key``; a key that is already gone is not an error."""
        try:
            await obstore.delete_async(self._store, key)
        except (NotFoundError, FileNotFoundError):
            return

    async def presign(self, key: str, *, expires_seconds: float) -> str | None:
        """A time-limited GET URL for ``key`` on S3; None for the local store (served by us)."""
        if not isinstance(self._store, S3Store):
            return None
        url = await obstore.sign_async(
            self._store, "GET", key, dt.timedelta(seconds=expires_seconds)
        )
        return str(url)

    def _attributes(self, content_type: str) -> Any:
        # the local store keeps no attributes; S3 serves the type on presigned reads
        return {"Content-Type": content_type} if self.kind == "s3" else None


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield bytes(chunk)


def open_storage(settings: Settings) -> ResultStore:
    """The result store ``settings.storage_url`` names."""
    url = (settings.storage_url or "").strip() or DEFAULT_LOCAL_ROOT
    parts = urlsplit(url)
    if parts.scheme in ("s3", "s3a"):
        return _open_s3(settings, bucket=parts.netloc, prefix=parts.path.strip("/"))
    if parts.scheme == "file":
        root = Path(parts.path)
    elif parts.scheme in ("",) or len(parts.scheme) == 1:  # a path (or a Windows drive)
        root = Path(url)
    else:
        raise ValueError(f"STORAGE_URL: unsupported scheme {parts.scheme!r} (file or s3)")
    root = root.resolve()
    return ResultStore(LocalStore(prefix=root, mkdir=True), kind="local", description=str(root))


def _open_s3(settings: Settings, *, bucket: str, prefix: str) -> ResultStore:
    if not bucket:
        raise ValueError("STORAGE_URL: s3://BUCKET[/prefix] needs a bucket")
    config: dict[str, Any] = {}
    client: dict[str, Any] = {
        "connect_timeout": dt.timedelta(seconds=settings.storage_connect_timeout),
        "timeout": dt.timedelta(seconds=settings.storage_timeout),
    }
    endpoint = settings.storage_s3_endpoint
    if endpoint:
        config["endpoint"] = endpoint
        # MinIO, moto and most self-hosted stores serve buckets as paths, not host names
        config["virtual_hosted_style_request"] = False
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    if settings.storage_s3_region:
        config["region"] = settings.storage_s3_region
    if settings.storage_s3_access_key_id is not None:
        config["access_key_id"] = settings.storage_s3_access_key_id.get_secret_value()
    if settings.storage_s3_secret_access_key is not None:
        config["secret_access_key"] = settings.storage_s3_secret_access_key.get_secret_value()
    store = S3Store(
        bucket,
        prefix=prefix or None,
        config=config,  # type: ignore[arg-type]
        client_options=client,  # type: ignore[arg-type]
        retry_config={"max_retries": 3, "retry_timeout": dt.timedelta(seconds=30)},
    )
    where = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
    if endpoint:
        where += f" at {urlsplit(endpoint).netloc}"
    return ResultStore(store, kind="s3", description=where)


__all__ = [
    "EXTENSIONS",
    "ResultStore",
    "StoredFileMissing",
    "StoredObject",
    "file_key",
    "open_storage",
]
