"""A webhook receiver for the chaos run: verifies Standard Webhooks signatures with the
`standardwebhooks` library and records every ``webhook-id`` it accepts.

It can refuse a share of well-signed deliveries with a 500 (``fail_rate``) so the sender's
retries are exercised too; a retried delivery arrives again with the same ``webhook-id``.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

from tests.support.services import free_port


@dataclass
class Received:
    """What the receiver saw, guarded by one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    # webhook-id → (event type, id of the job or batch in ``data``)
    events: dict[str, tuple[str, str]] = field(default_factory=dict)
    deliveries: Counter[str] = field(default_factory=Counter)  # accepted posts per webhook-id
    bad_signatures: int = 0
    refused_on_purpose: int = 0

    def snapshot(self) -> dict[str, tuple[str, str]]:
        with self.lock:
            return dict(self.events)


class WebhookReceiver:
    """``with WebhookReceiver(secret) as hooks: hooks.url …`` on 127.0.0.1, a free port."""

    def __init__(self, secret: str, *, fail_rate: float = 0.0, seed: int = 3) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self.received = Received()
        verifier = Webhook(secret)
        received = self.received
        rng = random.Random(seed)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verifier.verify(body, headers)
                except Exception:  # any verification failure is a bad signature
                    with received.lock:
                        received.bad_signatures += 1
                    self._answer(401)
                    return
                with received.lock:
                    if rng.random() < fail_rate:
                        received.refused_on_purpose += 1
                        refuse = True
                    else:
                        refuse = False
                        payload: dict[str, Any] = json.loads(body)
                        webhook_id = headers["webhook-id"]
                        data = payload.get("data") or {}
                        received.events[webhook_id] = (
                            str(payload.get("type")),
                            str(data.get("id")),
                        )
                        received.deliveries[webhook_id] += 1
                self._answer(500 if refuse else 204)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
