"""Dashboard logins: an admin API key typed into a form buys a random session id, kept in
Redis (as a hash) with the key's id. The cookie holds only that random id: never the key, and
nothing that works once the session is gone (logout deletes it at once, on every API process).

The cookie is HttpOnly (scripts cannot read it), SameSite=Lax (other sites cannot POST with it)
and Secure when the page is served over HTTPS; it is scoped to `/dashboard`.
"""

from __future__ import annotations

import hashlib
import secrets
import threading

import redis
from fastapi import Request, Response

COOKIE = "mcjobs_dashboard"
COOKIE_PATH = "/dashboard"
SESSION_SECONDS = 12 * 3600
_PREFIX = "mcjobs:dashboard:session:"

_clients: dict[str, redis.Redis] = {}
_lock = threading.Lock()


class SessionStoreDown(RuntimeError):
    """Redis, which holds the sessions, does not answer."""


def _client(redis_url: str) -> redis.Redis:
    with _lock:
        client = _clients.get(redis_url)
        if client is None:
            client = redis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
            _clients[redis_url] = client
        return client


def _slot(session_id: str) -> str:
    # a dump of Redis then holds no usable cookie values
    return _PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


def start_session(redis_url: str, api_key_id: str) -> str:
    """A new session for `api_key_id`; returns the cookie value."""
    session_id = secrets.token_urlsafe(32)
    try:
        _client(redis_url).set(_slot(session_id), api_key_id, ex=SESSION_SECONDS)
    except redis.RedisError as exc:
        raise SessionStoreDown(type(exc).__name__) from None
    return session_id


def session_key_id(redis_url: str, session_id: str | None) -> str | None:
    """The API key id a cookie value stands for, or None (unknown, expired or logged out)."""
    if not session_id or len(session_id) > 128:
        return None
    try:
        value = _client(redis_url).get(_slot(session_id))
    except redis.RedisError as exc:
        raise SessionStoreDown(type(exc).__name__) from None
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def end_session(redis_url: str, session_id: str | None) -> None:
    if not session_id or len(session_id) > 128:
        return
    try:
        _client(redis_url).delete(_slot(session_id))
    except redis.RedisError as exc:
        raise SessionStoreDown(type(exc).__name__) from None


def set_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        COOKIE,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
