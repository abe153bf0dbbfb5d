"""The CLI's client for the MetaChat Jobs API: the base URL and key from `MCJOBS_URL` and
`MCJOBS_API_KEY`, problem documents turned into `ApiError`, and patient retries.

Reads are retried on connection errors, 429 (honouring `Retry-After`) and 502/503/504. A POST is
retried only when it carries an `Idempotency-Key`: then a retry can never create twice.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any, Final

import httpx

DEFAULT_URL: Final = "http://127.0.0.1:8000"
RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})


class ApiError(Exception):
    """The API refused a request (a problem document) or could not be reached (`status` 0)."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str = "",
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(f"{status} {title}: {detail}" if detail else f"{status} {title}")
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []

    @classmethod
    def from_response(cls, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(response.status_code, response.reason_phrase or "error")
        errors = body.get("errors")
        return cls(
            response.status_code,
            str(body.get("title") or response.reason_phrase),
            str(body.get("detail") or ""),
            errors if isinstance(errors, list) else None,
        )

    def lines(self) -> list[str]:
        """Human lines: the problem, then one line per field error."""
        head = f"error {self.status}: {self.title}" if self.status else f"error: {self.title}"
        if self.detail:
            head += f" ({self.detail})"
        out = [head]
        for item in self.errors:
            loc = ".".join(str(part) for part in item.get("loc", []))
            out.append(f"  {loc or '(request)'}: {item.get('msg', '')}")
        return out


def _retry_after(response: httpx.Response, fallback: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return fallback


class ApiClient:
    """A synchronous client for one API base URL, authenticated by one key."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        key = api_key or os.environ.get("MCJOBS_API_KEY")
        if not key:
            raise ApiError(0, "no API key", "set MCJOBS_API_KEY or pass --api-key")
        self.base_url = (base_url or os.environ.get("MCJOBS_URL") or DEFAULT_URL).rstrip("/")
        self.retries = retries
        self._transport = transport
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {key}", "User-Agent": "mcjobs-cli"},
            timeout=timeout,
            trust_env=False,
            transport=transport,
        )

    def files_client(self) -> httpx.Client:
        """A client for `GET /v1/files/{id}` downloads: this key and base URL, redirects
        followed (httpx drops the key when a redirect leaves our host, e.g. to S3)."""
        return httpx.Client(
            base_url=self.base_url,
            headers=dict(self._http.headers),
            timeout=120.0,
            trust_env=False,
            follow_redirects=True,
            transport=self._transport,
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send, retrying what is safe to retry; `ApiError` for any 4xx/5xx that remains."""
        retryable = method == "GET" or bool(headers and "Idempotency-Key" in headers)
        delay = 0.5
        for attempt in range(self.retries + 1):
            last = attempt == self.retries or not retryable
            try:
                response = self._http.request(
                    method, path, params=params, json=json, headers=headers
                )
            except httpx.TransportError as exc:
                if last:
                    raise ApiError(0, f"cannot reach {self.base_url}", type(exc).__name__) from None
                self._sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if response.status_code in RETRY_STATUSES and not last:
                self._sleep(_retry_after(response, delay))
                delay = min(delay * 2, 10.0)
                continue
            if response.status_code >= 400:
                raise ApiError.from_response(response)
            return response
        raise AssertionError("unreachable")

    def get(self, path: str, **params: Any) -> Any:
        query = {name: value for name, value in params.items() if value not in (None, [], ())}
        return self.request("GET", path, params=query).json()

    def post(
        self, path: str, body: Any = None, *, idempotency_key: str | None = None
    ) -> tuple[Any, bool]:
        """The JSON answer and whether it replays an earlier identical request."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        response = self.request("POST", path, json=body, headers=headers)
        return response.json(), response.headers.get("idempotent-replayed") == "true"

    def listing(
        self,
        path: str,
        *,
        limit: int,
        cursor: str | None = None,
        every: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """A list route's answer, `{"data": [...], "next_cursor": ...}`: one page of up to
        `limit` from `cursor`, or with `every` all pages from `cursor` on as one list (and a
        null `next_cursor`), so `--json` prints the same shape either way."""
        if every:
            data = list(self.pages(path, cursor=cursor, limit=500, **params))
            return {"data": data, "next_cursor": None}
        page: dict[str, Any] = self.get(path, cursor=cursor, limit=limit, **params)
        return {"data": page["data"], "next_cursor": page.get("next_cursor")}

    def pages(self, path: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a list route, following `next_cursor` (from `cursor=`, if given)."""
        cursor: str | None = params.pop("cursor", None)
        while True:
            page = self.get(path, cursor=cursor, **params)
            yield from page["data"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    @staticmethod
    def _sleep(seconds: float) -> None:
        time.sleep(seconds * (0.8 + random.random() * 0.4))
