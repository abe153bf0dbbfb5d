"""Routes: a job's outputs as we stored them (the stable URLs in `result.files`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentKey, DbDep, SettingsDep, owner_scope, reject_unknown_query
from api.errors import ProblemError
from api.listing import is_plausible_id
from api.schemas import problems
from core.files import file_for_tenant
from core.settings import Settings
from core.storage import ResultStore, StoredFileMissing, open_storage
from core.tables import ResultFile

router = APIRouter(prefix="/v1", tags=["files"], dependencies=[Depends(reject_unknown_query)])

FileId = Annotated[str, Path(description="A file id (`file_…`), from a job's `result.files`.")]


def result_store(request: Request, settings: Settings) -> ResultStore:
    """The app's store, opened on first use (opening reads no network)."""
    store: ResultStore | None = getattr(request.app.state, "result_store", None)
    if store is None:
        store = open_storage(settings)
        request.app.state.result_store = store
    return store


def _not_found() -> ProblemError:
    return ProblemError(404, "Not Found", "no such file")


@router.get(
    "/files/{file_id}",
    responses={
        200: {"description": "The file's bytes.", "content": {"image/png": {}, "video/mp4": {}}},
        307: {"description": "A presigned URL on the S3 store (unless `redirect=false`)."},
        **problems(401, 404, 422),
    },
    response_class=Response,
    summary="Download a stored output",
)
async def get_file(
    file_id: FileId,
    key: CurrentKey,
    db: DbDep,
    settings: SettingsDep,
    request: Request,
    redirect: Annotated[
        bool,
        Query(description="On an S3 store, answer with a presigned URL instead of the bytes."),
    ] = True,
) -> Response:
    if not is_plausible_id(file_id):
        raise _not_found()

    def lookup() -> ResultFile | None:
        with db.read_session() as session:
            row = file_for_tenant(session, file_id, owner_scope(key))
            if row is not None:
                session.expunge(row)
            return row

    # another tenant's file is "not found", exactly like one that does not exist
    row = await run_in_threadpool(lookup)
    if row is None:
        raise _not_found()
    store = result_store(request, settings)
    cache = {"Cache-Control": "private, max-age=3600", "ETag": f'"{row.sha256}"'}
    if redirect and store.can_presign:
        url = await store.presign(row.key, expires_seconds=settings.storage_presign_seconds)
        if url is not None:
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    if request.headers.get("if-none-match") == cache["ETag"]:
        return Response(status_code=304, headers=cache)
    try:
        stored = await store.stream(row.key)
    except StoredFileMissing:
        raise ProblemError(404, "Not Found", "the file is no longer stored") from None
    return StreamingResponse(
        stored.chunks,
        media_type=row.content_type,
        headers={**cache, "Content-Length": str(stored.size)},
    )
