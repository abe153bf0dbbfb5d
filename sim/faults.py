"""Injected trouble: the request-rate token bucket and the per-request fault draw."""

from __future__ import annotations

import math
import random
from enum import StrEnum

from sim.config import SimConfig


class Fault(StrEnum):
    """A misbehaviour the simulator can inject into one request."""

    ERROR_500 = "error_500"
    ERROR_502 = "error_502"
    RATE_429 = "rate_429"
    SLOW = "slow"
    READ_TIMEOUT = "read_timeout"
    MALFORMED_MISSING_ID = "malformed_missing_id"
    MALFORMED_NOT_JSON = "malformed_not_json"


def draw_fault(rng: random.Random, config: SimConfig, is_submit: bool) -> Fault | None:
    """Pick at most one fault for a request, consuming draws from the shared stream.

    A request that no fault targets consumes nothing, so turning faults off for polls keeps the
    submit sequence reproducible.
    """
    if not (config.fault_on_submit if is_submit else config.fault_on_poll):
        return None
    rates = (
        config.error_5xx_rate,
        config.rate_429_rate,
        config.slow_rate,
        config.read_timeout_rate,
        config.malformed_rate,
    )
    if not any(rates):
        return None
    roll = rng.random()
    edge = 0.0
    for index, rate in enumerate(rates):
        edge += rate
        if roll < edge:
            return _fault_of(index, rng)
    return None


def _fault_of(index: int, rng: random.Random) -> Fault:
    if index == 0:
        return Fault.ERROR_500 if rng.random() < 0.5 else Fault.ERROR_502
    if index == 1:
        return Fault.RATE_429
    if index == 2:
        return Fault.SLOW
    if index == 3:
        return Fault.READ_TIMEOUT
    return Fault.MALFORMED_MISSING_ID if rng.random() < 0.5 else Fault.MALFORMED_NOT_JSON


class TokenBucket:
    """``rate`` requests per second with bursts up to ``burst``; rate 0 admits everything."""

    def __init__(self, rate: float, burst: int | None, now: float) -> None:
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.tokens = self.capacity
        self.updated = now

    def reconfigure(self, rate: float, burst: int | None, now: float) -> None:
        """Change the limits, keeping the tokens already earned (up to the new capacity)."""
        self._refill(now)
        self.rate = rate
        self.capacity = float(burst if burst is not None else max(1, math.ceil(rate)))
        self.tokens = min(self.tokens, self.capacity)

    def take(self, now: float) -> float | None:
        """Spend a token; None when admitted, else the seconds until one is available."""
        if self.rate <= 0:
            return None
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
