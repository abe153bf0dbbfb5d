"""Fake DNS for webhook tests: map chosen names to chosen addresses via `socket.getaddrinfo`,
leaving every other lookup (databases, Redis) alone."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

Answers = Mapping[str, Sequence[str] | Callable[[], Sequence[str]]]


def fake_dns(monkeypatch: pytest.MonkeyPatch, answers: Answers) -> list[str]:
    """Install the fake; returns the log of names looked up through it."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in answers:
            return real(host, port, *args, **kwargs)
        looked_up.append(name)
        answer = answers[name]
        addresses = answer() if callable(answer) else answer
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        result = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, int(port or 0), 0, 0) if ":" in address else (address, port)
            result.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return result

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up
