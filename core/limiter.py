"""Upstream limits shared by every worker on every machine: one token bucket and one in-flight
cap per provider, kept in Redis (Celery's ``rate_limit`` is per worker and cannot do this).

- **Rate**: ``PROVIDER_RATE_PER_SECOND[provider]`` (else ``["default"]``) submits per second,
  bursts of one second's worth. Each provider has its own bucket. A 429 halves the provider's
  rate (it grows back over about twenty seconds) and pauses it for ``Retry-After``.
- **In flight**: ``PROVIDER_MAX_IN_FLIGHT[provider]`` tasks running upstream at once. The count
  is never stored: the caller passes the database's count of running jobs and the limiter adds
  its short-lived reservations for submits in progress, so neither a SIGKILLed worker nor a
  Redis FLUSHALL can leave it wrong for longer than one reservation.
- **Pauses**: a provider (after a 429) or everything (the upstream unreachable, the API key
  refused) can be paused until a given time.

Every decision is one Lua script run against Redis' own clock, so workers with skewed clocks
agree. A rate or cap of 0 or less means "no limit".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis

from core.settings import Settings

ALL = "*"

# Halved on every 429, never below this share of the configured rate.
MIN_RATE_FACTOR = 0.05
# Rate factor regained per second after a slow-down (0.05 → 1.0 in about twenty seconds).
RECOVERY_PER_SECOND = 0.05
# Consecutive "upstream unreachable" verdicts are forgotten after this long without one.
UNREACHABLE_MEMORY_SECONDS = 300

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local pause = math.max(tonumber(redis.call('GET', KEYS[3]) or '0'),
                       tonumber(redis.call('GET', KEYS[4]) or '0'))
if pause > now then return {0, tostring(pause - now), 'paused'} end
local wanted = #ARGV - 5
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local room = wanted
if tonumber(ARGV[3]) >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  room = tonumber(ARGV[3]) - redis.call('ZCARD', KEYS[2])
end
local granted = math.max(0, math.min(wanted, room))
local wait = 0
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'factor')
  local tokens = tonumber(b[1]) or burst
  local ts = tonumber(b[2]) or now
  local factor = tonumber(b[3]) or 1
  local elapsed = math.max(0, now - ts)
  factor = math.min(1, factor + elapsed * tonumber(ARGV[5]))
  tokens = math.min(burst, tokens + elapsed * rate * factor)
  granted = math.min(granted, math.floor(tokens))
  tokens = tokens - granted
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now),
             'factor', tostring(factor))
  redis.call('EXPIRE', KEYS[1], 3600)
  if granted < wanted then wait = (1 - (tokens - math.floor(tokens))) / (rate * factor) end
end
if tonumber(ARGV[3]) >= 0 and granted > 0 then
  local expires = now + tonumber(ARGV[4])
  for i = 1, granted do redis.call('ZADD', KEYS[2], expires, ARGV[5 + i]) end
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[4])) + 60)
end
local why = 'ok'
if granted < wanted then
  if granted >= room then why = 'in_flight' else why = 'rate' end
end
return {granted, tostring(wait), why}
"""

_SLOW_DOWN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'factor', 'ts')
local factor = tonumber(b[1]) or 1
local ts = tonumber(b[2]) or now
factor = math.min(1, factor + math.max(0, now - ts) * tonumber(ARGV[3]))
factor = math.max(tonumber(ARGV[2]), factor * 0.5)
redis.call('HSET', KEYS[1], 'tokens', '0', 'ts', tostring(now), 'factor', tostring(factor))
redis.call('EXPIRE', KEYS[1], 3600)
local untils = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if untils > current then
  redis.call('SET', KEYS[2], tostring(untils), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return tostring(factor)
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local untils = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untils > current then
  redis.call('SET', KEYS[1], tostring(untils), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
  return tostring(untils - now)
end
return tostring(current - now)
"""


@dataclass(frozen=True)
class Grant:
    """What `ProviderLimiter.acquire` allowed.

    ``job_ids``: the first ones asked for that may be submitted now (a reservation is held for
    each). ``retry_in``: seconds until more could be granted (0 when unknown). ``reason``:
    ``ok``, ``rate``, ``in_flight`` or ``paused``.
    """

    job_ids: tuple[str, ...]
    retry_in: float
    reason: str


class ProviderLimiter:
    """Global per-provider rate, in-flight cap and pauses, in Redis. Thread- and fork-safe as
    far as the given Redis client is."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        rates: Mapping[str, float],
        caps: Mapping[str, int],
        reservation_seconds: float = 120.0,
        prefix: str = "mcjobs:limit",
    ) -> None:
        self._redis = client
        self._rates = dict(rates)
        self._caps = dict(caps)
        self.reservation_seconds = reservation_seconds
        self._prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._slow_down = client.register_script(_SLOW_DOWN)
        self._pause = client.register_script(_PAUSE)

    def __repr__(self) -> str:
        return f"ProviderLimiter(rates={self._rates!r}, caps={self._caps!r})"

    def rate_for(self, provider: str) -> float:
        return float(self._rates.get(provider, self._rates.get("default", 0.0)))

    def cap_for(self, provider: str) -> int:
        return int(self._caps.get(provider, self._caps.get("default", 0)))

    def _key(self, provider: str, what: str) -> str:
        return f"{self._prefix}:{provider}:{what}"

    def acquire(self, provider: str, job_ids: Sequence[str], *, running: int) -> Grant:
        """Reserve submits for as many of ``job_ids`` (in order) as the limits allow now.

        ``running``: jobs of this provider the database says are running upstream.
        """
        if not job_ids:
            return Grant((), 0.0, "ok")
        rate = self.rate_for(provider)
        cap = self.cap_for(provider)
        room = max(cap - running, 0) if cap > 0 else -1
        burst = max(1.0, rate)
        result = cast(
            "list[Any]",
            self._acquire(
                keys=[
                    self._key(provider, "bucket"),
                    self._key(provider, "reserved"),
                    self._key(provider, "paused_until"),
                    self._key(ALL, "paused_until"),
                ],
                args=[rate, burst, room, self.reservation_seconds, RECOVERY_PER_SECOND, *job_ids],
            ),
        )
        granted = int(result[0])
        return Grant(tuple(job_ids[:granted]), float(_text(result[1])), _text(result[2]))

    def release(self, provider: str, job_ids: Sequence[str]) -> None:
        """Drop reservations once their submits ended (the database now counts them)."""
        if job_ids and self.cap_for(provider) > 0:
            self._redis.zrem(self._key(provider, "reserved"), *job_ids)

    def slow_down(self, provider: str, retry_after: float) -> float:
        """After a 429: halve the provider's rate and pause it ``retry_after`` seconds.
        Returns the new share of the configured rate."""
        factor = self._slow_down(
            keys=[self._key(provider, "bucket"), self._key(provider, "paused_until")],
            args=[max(retry_after, 0.0), MIN_RATE_FACTOR, RECOVERY_PER_SECOND],
        )
        return float(_text(factor))

    def pause(self, provider: str, seconds: float) -> float:
        """Stop granting for ``provider`` (or `ALL`) for ``seconds``; an existing longer pause
        stays. Returns the seconds the pause now lasts."""
        left = self._pause(keys=[self._key(provider, "paused_until")], args=[max(seconds, 0.0)])
        return max(float(_text(left)), 0.0)

    def paused_for(self, provider: str) -> float:
        """Seconds left of the pause on ``provider`` (or everything); 0 when not paused."""
        now = _redis_now(self._redis)
        values = self._redis.mget(
            [self._key(provider, "paused_until"), self._key(ALL, "paused_until")]
        )
        untils = [float(_text(v)) for v in cast("list[Any]", values) if v is not None]
        return max([u - now for u in untils] + [0.0])

    def note_unreachable(self) -> int:
        """Count one more consecutive "nothing could be sent" verdict; returns the count."""
        key = self._key(ALL, "unreachable")
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, UNREACHABLE_MEMORY_SECONDS)
        count, _ = pipe.execute()
        return int(count)

    def note_reachable(self) -> None:
        self._redis.delete(self._key(ALL, "unreachable"))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _redis_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def limiter_from_settings(
    client: redis.Redis, settings: Settings, *, reservation_seconds: float
) -> ProviderLimiter:
    """The limiter for ``PROVIDER_RATE_PER_SECOND`` and ``PROVIDER_MAX_IN_FLIGHT``."""
    return ProviderLimiter(
        client,
        rates=settings.provider_rate_per_second,
        caps=settings.provider_max_in_flight,
        reservation_seconds=max(reservation_seconds, 1.0),
    )
