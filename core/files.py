"""File rows: one per job output copied into our storage (`core.storage` holds the bytes).

Sync helpers for a session, like the rest of `core`; pumps call them on their database thread.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from typing import Any

from PIL import Image
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core import ids
from core.tables import Job, ResultFile, utcnow
from core.views import rfc3339


def image_dimensions(data: bytes) -> tuple[int | None, int | None]:
    """(width, height) read from an image's header; (None, None) for anything Pillow cannot
    identify (a video, a truncated or unknown file). The pixels are never decoded."""
    try:
        with warnings.catch_warnings():
            # a huge canvas is still a valid result: its size is all we want
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        return None, None
    return int(width), int(height)


def record_file(
    session: Session,
    *,
    job_id: str,
    index: int,
    key: str,
    sha256: str,
    size: int,
    content_type: str,
    width: int | None,
    height: int | None,
    source_url: str | None,
    copied_at: dt.datetime | None = None,
) -> str:
    """Record output ``index`` of ``job_id`` as stored under ``key``; returns the file id.

    Idempotent on (job, index): a replay (a copy redone after a crash) updates the one row
    with what is in the store now and keeps its id, so links already handed out stay valid.
    The caller's transaction commits it.
    """
    api_key_id = session.execute(select(Job.api_key_id).where(Job.id == job_id)).scalar_one()
    values: dict[str, Any] = {
        "id": ids.new_id(ids.FILE),
        "job_id": job_id,
        "api_key_id": api_key_id,
        "output_index": index,
        "key": key,
        "sha256": sha256,
        "size_bytes": size,
        "content_type": content_type,
        "width": width,
        "height": height,
        "source_url": source_url,
        "copied_at": copied_at or utcnow(),
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ResultFile).values(**values)
    refreshed = {
        name: statement.excluded[name]
        for name in ("key", "sha256", "size_bytes", "content_type", "width", "height")
    }
    refreshed.update(
        source_url=statement.excluded.source_url, copied_at=statement.excluded.copied_at
    )
    upsert = statement.on_conflict_do_update(
        index_elements=["job_id", "output_index"], set_=refreshed
    ).returning(ResultFile.id)
    return str(session.execute(upsert).scalar_one())


def files_of(session: Session, job_id: str) -> list[ResultFile]:
    """A job's file rows in output order."""
    return list(
        session.scalars(
            select(ResultFile).where(ResultFile.job_id == job_id).order_by(ResultFile.output_index)
        )
    )


def file_for_tenant(session: Session, file_id: str, api_key_id: str | None) -> ResultFile | None:
    """The file row if ``api_key_id`` owns it (None: an admin, who sees every tenant's)."""
    query = select(ResultFile).where(ResultFile.id == file_id)
    if api_key_id is not None:
        query = query.where(ResultFile.api_key_id == api_key_id)
    return session.scalars(query).one_or_none()


def file_url(base_url: str, file_id: str) -> str:
    """The stable URL of a file: our API, not the upstream CDN."""
    return f"{base_url.rstrip('/')}/v1/files/{file_id}"


def file_view(row: ResultFile, base_url: str) -> dict[str, Any]:
    """A file as the API and webhooks show it (docs/api.md, "Files")."""
    return {
        "id": row.id,
        "index": row.output_index,
        "url": file_url(base_url, row.id),
        "content_type": row.content_type,
        "bytes": row.size_bytes,
        "sha256": row.sha256,
        "width": row.width,
        "height": row.height,
        "source_url": row.source_url,
        "copied_at": rfc3339(row.copied_at),
    }


__all__ = [
    "file_for_tenant",
    "file_url",
    "file_view",
    "files_of",
    "image_dimensions",
    "record_file",
]
