"""The maintenance tick caches MetaChat's balance for the dashboard and /metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import redis

from core.stats import cached_upstream_balance
from metachat import MetaChatClient, build_catalogue
from worker.balance import refresh_upstream_balance

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "metachat"


def _client(handler: httpx.MockTransport) -> MetaChatClient:
    http = httpx.AsyncClient(transport=handler)
    return MetaChatClient(
        http, build_catalogue(), base_url="https://upstream.test/open/v1", api_key="k"
    )


def test_the_balance_read_from_upstream_is_cached(redis_url: str) -> None:
    fixture = json.loads((FIXTURES / "balance-success.json").read_text())
    answer = httpx.MockTransport(lambda _r: httpx.Response(fixture["http"], json=fixture["body"]))
    cache = redis.Redis.from_url(redis_url)
    points = asyncio.run(refresh_upstream_balance(_client(answer), cache))
    cached = cached_upstream_balance(cache)
    assert points is not None and cached is not None
    assert cached.points == points


def test_an_upstream_that_cannot_say_leaves_the_cache_alone(redis_url: str) -> None:
    answer = httpx.MockTransport(lambda _r: httpx.Response(404, json={"status": "not_found_error"}))
    cache = redis.Redis.from_url(redis_url)
    assert asyncio.run(refresh_upstream_balance(_client(answer), cache)) is None
    assert cached_upstream_balance(cache) is None
