"""The operator dashboard: `/dashboard` (charts and tables, refreshed in place),
`/dashboard/jobs/{id}` (one job and its audit trail), login and logout.

Pages are server-rendered Jinja2 (`api/templates`) with hand-made SVG charts. Every page
is sent with a strict Content-Security-Policy: no inline style, and only the page's own refresh
script (by nonce) may run.
"""

from __future__ import annotations

import datetime as dt
import secrets
from importlib import resources
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from api.deps import DbDep, SettingsDep
from api.routes.dashboard.sessions import (
    COOKIE,
    SessionStoreDown,
    clear_cookie,
    end_session,
    session_key_id,
    set_cookie,
    start_session,
)
from api.routes.dashboard.upstream import last_check_of
from api.routes.dashboard.view import (
    DEFAULT_WINDOW,
    WINDOWS,
    ViewCache,
    build_view,
)
from core.db import Database
from core.keys import find_api_key
from core.settings import Settings
from core.stats import balance_reader, job_detail, webhook_target
from core.tables import ApiKey, utcnow

router = APIRouter(prefix="/dashboard", include_in_schema=False)

_STATIC = {"dashboard.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
_views = ViewCache(ttl=5.0)


def _utc(value: dt.datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 120:
        return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


templates = Environment(
    loader=PackageLoader("api", "templates"),
    autoescape=select_autoescape(("html",), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["utc"] = _utc
templates.filters["seconds"] = _seconds
templates.filters["target"] = lambda url: webhook_target(url) if url else "—"


def _render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    page = templates.get_template(name).render(nonce=nonce, **context)
    response = HTMLResponse(page, status_code=status)
    response.headers.update(
        {
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'self'; img-src 'self'; connect-src 'self'; "
                f"script-src 'nonce-{nonce}'; form-action 'self'; frame-ancestors 'none'; "
                "base-uri 'none'"
            ),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin",
        }
    )
    return response


def _unavailable() -> HTMLResponse:
    return _render(
        "dashboard_message.html",
        503,
        title="Sessions unavailable",
        message="Redis, which keeps dashboard sessions, does not answer. Try again shortly.",
    )


def _operator(request: Request, db: Database, settings: Settings) -> ApiKey | None:
    """The admin key behind this browser's session, if it is still live and still admin."""
    key_id = session_key_id(settings.redis_url, request.cookies.get(COOKIE))
    if key_id is None:
        return None
    with db.read_session() as session:
        key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None or not key.is_admin:
        return None
    return key


def _same_origin(request: Request) -> bool:
    """A POST from one of our own pages (browsers send Origin on form posts)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.url.netloc


def _to_login() -> RedirectResponse:
    return RedirectResponse("/dashboard/login", status_code=303)


@router.get("/login")
def login_page(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    try:
        if _operator(request, db, settings) is not None:
            return RedirectResponse("/dashboard", status_code=303)
    except SessionStoreDown:
        return _unavailable()
    return _render("dashboard_login.html", error=None)


@router.post("/login")
async def login(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    if not _same_origin(request):
        return _render("dashboard_login.html", 403, error="Log in from this site's own page.")
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    raw_key = (form.get("api_key") or [""])[0].strip()
    with db.read_session() as session:
        key = find_api_key(session, raw_key) if raw_key else None
    if key is None:
        return _render("dashboard_login.html", 401, error="That is not a valid API key.")
    if not key.is_admin:
        return _render("dashboard_login.html", 403, error="The dashboard needs an admin key.")
    try:
        session_id = start_session(settings.redis_url, key.id)
    except SessionStoreDown:
        return _unavailable()
    response = RedirectResponse("/dashboard", status_code=303)
    set_cookie(response, request, session_id)
    return response


@router.post("/logout")
def logout(request: Request, settings: SettingsDep) -> Response:
    if not _same_origin(request):
        return _render("dashboard_message.html", 403, title="Refused", message="Cross-site POST.")
    try:
        end_session(settings.redis_url, request.cookies.get(COOKIE))
    except SessionStoreDown:
        return _unavailable()
    response = _to_login()
    clear_cookie(response, request)
    return response


def _page_context(
    db: Database, settings: Settings, window: str | None, key: str | None, refresh: int = 15
) -> dict[str, Any]:
    chosen = WINDOWS.get(window or DEFAULT_WINDOW, WINDOWS[DEFAULT_WINDOW])
    api_key_id = key or None
    view = _views.get(
        db,
        chosen,
        api_key_id,
        lambda: build_view(
            db,
            window=chosen,
            api_key_id=api_key_id,
            balance=balance_reader(settings.redis_url)(),
        ),
    )
    return {
        "view": view,
        "windows": list(WINDOWS.values()),
        "now": utcnow(),
        "refresh_seconds": refresh,
    }


@router.get("")
def dashboard(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    window: Annotated[str | None, Query()] = None,
    key: Annotated[str | None, Query()] = None,
    refresh: Annotated[int, Query(ge=2, le=300)] = 15,
) -> Response:
    try:
        operator = _operator(request, db, settings)
    except SessionStoreDown:
        return _unavailable()
    if operator is None:
        return _to_login()
    context = _page_context(db, settings, window, key, refresh)
    return _render("dashboard.html", operator=operator, **context)


@router.get("/fragment")
def dashboard_fragment(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    window: Annotated[str | None, Query()] = None,
    key: Annotated[str | None, Query()] = None,
) -> Response:
    """The page's main part alone, for the in-place refresh (401 once the session is gone)."""
    try:
        operator = _operator(request, db, settings)
    except SessionStoreDown:
        return _unavailable()
    if operator is None:
        return Response(status_code=401, headers={"Cache-Control": "no-store"})
    return _render("dashboard_main.html", **_page_context(db, settings, window, key))


@router.get("/jobs/{job_id}")
def job_page(request: Request, job_id: str, db: DbDep, settings: SettingsDep) -> Response:
    try:
        operator = _operator(request, db, settings)
    except SessionStoreDown:
        return _unavailable()
    if operator is None:
        return _to_login()
    with db.read_session() as session:
        detail = job_detail(session, job_id)
    if detail is None:
        return _render(
            "dashboard_message.html", 404, title="No such job", message=f"No job {job_id}."
        )
    return _render("dashboard_job.html", operator=operator, detail=detail)


@router.api_route("/upstream", methods=["GET", "POST"])
def upstream_page(request: Request, db: DbDep, settings: SettingsDep) -> Response:
    """`mcjobs upstream check` from the browser: the last report; a POST runs a new one."""
    try:
        operator = _operator(request, db, settings)
    except SessionStoreDown:
        return _unavailable()
    if operator is None:
        return _to_login()
    busy = False
    last_check = last_check_of(request.app.state)
    if request.method == "POST":
        if not _same_origin(request):
            return _render(
                "dashboard_message.html", 403, title="Refused", message="Cross-site POST."
            )
        busy = last_check.run(settings) is None
    return _render(
        "dashboard_upstream.html",
        operator=operator,
        checked=last_check.latest,
        busy=busy,
        has_key=settings.metachat_api_key is not None,
        base_url=settings.metachat_base_url,
    )


@router.get("/static/{name}")
def static_file(name: str) -> Response:
    media_type = _STATIC.get(name)
    if media_type is None:
        return Response(status_code=404)
    body = resources.files("api").joinpath("static", name).read_bytes()
    return Response(body, media_type=media_type, headers={"Cache-Control": "max-age=300"})
