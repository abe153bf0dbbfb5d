"""A tiny signature-checking webhook receiver, for people wiring MetaChat Jobs into their apps
(`mcjobs webhooks listen`). It verifies each POST with the `standardwebhooks` library, answers
401 to anything unsigned, wrongly signed or too old, and hands verified events to a callback.
It is a development tool: one process, no TLS, bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from core.webhooks.signing import ID_HEADER

MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True)
class ReceivedEvent:
    """A verified webhook: its `webhook-id`, the parsed body, and how often that id came."""

    webhook_id: str
    body: dict[str, Any]
    seen: int

    @property
    def type(self) -> str:
        return str(self.body.get("type", "?"))

    @property
    def subject_id(self) -> str:
        data = self.body.get("data")
        return str(data.get("id", "?")) if isinstance(data, dict) else "?"


@dataclass(frozen=True)
class RejectedRequest:
    path: str
    reason: str


class WebhookListener:
    """Serve on `host:port`; `on_event` gets each verified event, `on_reject` each refusal."""

    def __init__(
        self,
        secret: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        on_event: Callable[[ReceivedEvent], None],
        on_reject: Callable[[RejectedRequest], None] | None = None,
    ) -> None:
        self._verifier = Webhook(secret)  # raises on a malformed secret, before we listen
        self._on_event = on_event
        self._on_reject = on_reject or (lambda _rejected: None)
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"WebhookListener(url={self.url!r})"

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def serve_forever(self) -> None:
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> WebhookListener:
        """Serve on a background thread (tests, embedding)."""
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _count(self, webhook_id: str) -> int:
        with self._lock:
            self._seen[webhook_id] = self._seen.get(webhook_id, 0) + 1
            return self._seen[webhook_id]

    def _verify(self, body: bytes, headers: dict[str, str]) -> ReceivedEvent:
        try:
            text = body.decode("utf-8")
            parsed = self._verifier.verify(text, headers)
        except Exception as exc:  # the library raises several kinds for bad input
            raise PermissionError(str(exc) or type(exc).__name__) from None
        if not isinstance(parsed, dict):
            raise PermissionError("the body is not a JSON object")
        webhook_id = headers.get(ID_HEADER, "")
        return ReceivedEvent(webhook_id=webhook_id, body=parsed, seen=self._count(webhook_id))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "mcjobs-listen"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the listener prints events, not access lines."""

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(413, {"error": "body too large"})
                    return
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    event = listener._verify(body, headers)
                except PermissionError as exc:
                    listener._on_reject(RejectedRequest(self.path, str(exc)))
                    self._answer(401, {"error": f"signature not verified: {exc}"})
                    return
                listener._on_event(event)
                self._answer(200, {"ok": True})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
