"""A real HTTP webhook receiver on 127.0.0.1 for tests: records every request and answers from a
script (a status sequence, or any function of the request)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hold: threading.Event | None = None  # answer only once this is set (a slow receiver)


Script = Callable[[int, Received], Answer]


def statuses(*codes: int, then: int = 200) -> Script:
    """Answer the n-th request with `codes[n]`, and every later one with `then`."""

    def script(n: int, _request: Received) -> Answer:
        return Answer(codes[n] if n < len(codes) else then)

    return script


def always(code: int, **headers: str) -> Script:
    return lambda _n, _request: Answer(code, headers=dict(headers))


class WebhookReceiver:
    def __init__(self, script: Script | None = None) -> None:
        self.script = script or statuses()
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str]:
        with self._lock:
            return [request.webhook_id for request in self.received]

    def count(self) -> int:
        with self._lock:
            return len(self.received)

    def _record(self, request: Received) -> Answer:
        with self._lock:
            n = len(self.received)
            self.received.append(request)
        return self.script(n, request)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                answer = receiver._record(Received(self.path, headers, body))
                if answer.hold is not None:
                    answer.hold.wait(timeout=60)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except OSError:
                    pass  # the sender gave up on us (timeout, killed): nothing to answer

        return Handler

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def webhook_receiver(script: Script | None = None) -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(script).start()
    try:
        yield receiver
    finally:
        receiver.stop()
