"""MetaChat's account balance, read now and then so the dashboard and `/metrics` can show it
without calling upstream on every page view."""

from __future__ import annotations

import asyncio
import logging

import redis

from core.stats import store_upstream_balance
from metachat import MetaChatClient, UpstreamError

log = logging.getLogger(__name__)

BALANCE_EVERY_SECONDS = 300.0


async def refresh_upstream_balance(client: MetaChatClient, cache: redis.Redis) -> int | None:
    """Read the balance and cache it; None when upstream has no balance call or did not answer."""
    try:
        points = await client.balance()
    except UpstreamError as exc:
        log.info("upstream balance not read: %s", type(exc).__name__)
        return None
    if points is not None:
        try:
            # a sync Redis call: off the loop, so the pump's calls never wait on it
            await asyncio.to_thread(store_upstream_balance, cache, points)
        except redis.RedisError as exc:
            log.info("upstream balance not cached: %s", type(exc).__name__)
    return points
