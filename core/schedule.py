"""When the pipeline next looks at a job: poll schedules, submit back-off, reconcile cadence.

The one place that computes back-off. Every delay here is in seconds and already multiplied by
``POLL_TIME_SCALE`` when it leaves (`PollPlanner`, `submit_backoff`), so tests and benchmarks can
run the whole pipeline fast by setting one number.

A poll schedule is shaped by how long the upstream task usually takes: the first poll comes a
little before the typical duration, later gaps grow with the time already spent (a fixed fraction
of it, so the lag between the task ending and us noticing stays a bounded share of its duration),
capped. When MetaChat reports progress, the schedule extrapolates the finish time from the last
two readings and polls then if that is sooner. The typical duration starts from the catalogue and
is then learnt per model and action from the jobs this process saw finish (`DurationEstimator`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

# Submit retries: 2 s, 4 s, 8 s ... capped at two minutes (before the time scale).
SUBMIT_BACKOFF_BASE = 2.0
SUBMIT_BACKOFF_CAP = 120.0
# A follow-up whose source job is not finished yet looks again after this long.
SOURCE_WAIT_SECONDS = 5.0
# Timed-out jobs keep being looked at, slowly, for a day: a late success is still recorded.
RECONCILE_INTERVAL_SECONDS = 60.0
RECONCILE_WINDOW_SECONDS = 86_400.0
# Without a Retry-After header a 429 pauses the provider this long.
DEFAULT_RATE_LIMIT_PAUSE = 2.0

_rng = random.SystemRandom()


def jittered(seconds: float, fraction: float = 0.1, rng: random.Random | None = None) -> float:
    """``seconds`` moved by up to ``±fraction`` of itself, so many rows never fall due together."""
    if seconds <= 0 or fraction <= 0:
        return max(seconds, 0.0)
    spread = min(fraction, 1.0)
    return seconds * (1.0 + (rng or _rng).uniform(-spread, spread))


def exponential_backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    factor: float = 2.0,
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> float:
    """``base * factor**(attempt-1)``, capped, jittered; ``attempt`` counts from 1."""
    exponent = max(attempt, 1) - 1
    # Compare exponents rather than computing factor**exponent, which overflows for big attempts.
    if factor > 1 and exponent * math.log(factor) > math.log(max(cap / base, 1.0)):
        delay = cap
    else:
        delay = min(cap, base * factor**exponent)
    return jittered(delay, jitter, rng)


def submit_backoff(
    attempt: int, *, time_scale: float = 1.0, rng: random.Random | None = None
) -> float:
    """Seconds before submit attempt ``attempt + 1`` after ``attempt`` failed ones."""
    return time_scale * exponential_backoff(
        attempt, base=SUBMIT_BACKOFF_BASE, cap=SUBMIT_BACKOFF_CAP, rng=rng
    )


@dataclass(frozen=True)
class PollSchedule:
    """How one kind of task (a provider, a model, or a model's action) is polled.

    All times are seconds after the submit. ``expected_seconds`` is the typical upstream
    duration; the first poll comes at ``first_fraction`` of it (or at ``first_seconds`` when set);
    each later gap is ``growth`` times the time since submit, kept within
    ``[min_interval, max_interval]`` and moved by ``±jitter``. ``deadline_seconds`` is the
    default deadline of jobs that set none (else twenty typical durations, at least
    ``deadline_floor``). ``learn`` lets observed durations replace ``expected_seconds``.
    """

    expected_seconds: float
    first_fraction: float = 0.8
    # Before anything was learnt the catalogue's figure is only a guess: look earlier.
    unlearnt_first_fraction: float = 0.65
    first_seconds: float | None = None
    growth: float = 0.25
    min_interval: float = 0.5
    max_interval: float = 30.0
    jitter: float = 0.1
    deadline_seconds: float | None = None
    deadline_floor: float = 600.0
    # a predicted finish is polled this much later, so the poll lands just after it
    prediction_margin: float = 1.05
    learn: bool = True

    def __post_init__(self) -> None:
        checks = {
            "expected_seconds": self.expected_seconds > 0,
            "first_fraction": 0 < self.first_fraction <= 10,
            "unlearnt_first_fraction": 0 < self.unlearnt_first_fraction <= 10,
            "first_seconds": self.first_seconds is None or self.first_seconds >= 0,
            "growth": self.growth > 0,
            "min_interval": self.min_interval > 0,
            "max_interval": self.max_interval >= self.min_interval,
            "jitter": 0 <= self.jitter < 1,
            "deadline_seconds": self.deadline_seconds is None or self.deadline_seconds > 0,
            "deadline_floor": self.deadline_floor > 0,
            "prediction_margin": self.prediction_margin >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"invalid poll schedule value(s): {', '.join(bad)}")

    @property
    def default_deadline(self) -> float:
        """Seconds a job may run upstream before it times out, when it asked for nothing."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        # Generous: upstream queues grow under load, and a timeout may waste a paid task.
        return max(20.0 * self.expected_seconds, self.deadline_floor)

    def scaled(self, factor: float) -> PollSchedule:
        """The same schedule with every duration multiplied by ``factor``."""
        return replace(
            self,
            expected_seconds=self.expected_seconds * factor,
            first_seconds=None if self.first_seconds is None else self.first_seconds * factor,
            min_interval=self.min_interval * factor,
            max_interval=self.max_interval * factor,
            deadline_seconds=(
                None if self.deadline_seconds is None else self.deadline_seconds * factor
            ),
            deadline_floor=self.deadline_floor * factor,
        )

    def first_delay(
        self, *, expected_seconds: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds from submit to the first poll (``expected_seconds``: a learnt duration)."""
        if self.first_seconds is not None:
            return jittered(self.first_seconds, self.jitter, rng)
        if expected_seconds is None:
            first = self.unlearnt_first_fraction * self.expected_seconds
        else:
            first = self.first_fraction * expected_seconds
        return max(self.min_interval, jittered(first, self.jitter, rng))

    def next_delay(
        self,
        *,
        elapsed: float,
        progress: int | None = None,
        previous_elapsed: float | None = None,
        previous_progress: int | None = None,
        rng: random.Random | None = None,
    ) -> float:
        """Seconds from now to the next poll of a task still running ``elapsed`` s after submit.

        ``progress`` (0..100) is what this poll saw, ``previous_*`` what the poll before saw.
        """
        gap = min(self.max_interval, max(self.min_interval, self.growth * max(elapsed, 0.0)))
        predicted = predicted_remaining(
            elapsed=elapsed,
            progress=progress,
            previous_elapsed=previous_elapsed,
            previous_progress=previous_progress,
        )
        if predicted is not None:
            gap = min(gap, max(self.min_interval, predicted * self.prediction_margin))
        return jittered(gap, self.jitter, rng)


def predicted_remaining(
    *,
    elapsed: float,
    progress: int | None,
    previous_elapsed: float | None,
    previous_progress: int | None,
) -> float | None:
    """Seconds until 100 % at the rate progress moved between the last two readings, or None."""
    if progress is None or previous_progress is None or previous_elapsed is None:
        return None
    moved = progress - previous_progress
    span = elapsed - previous_elapsed
    if moved <= 0 or span <= 0 or not 0 < progress < 100:
        return None
    return (100 - progress) * span / moved


_FIELDS = {f.name for f in fields(PollSchedule)}
# Short names accepted in POLL_SCHEDULES for the commonest fields.
ALIASES = {
    "first": "first_seconds",
    "min": "min_interval",
    "max": "max_interval",
    "deadline": "deadline_seconds",
    "expected": "expected_seconds",
}


def parse_overrides(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check ``POLL_SCHEDULES``: ``{"<provider>|<model>|<model>:<action>|default": {...}}``.

    Values are `PollSchedule` fields (or their `ALIASES`) in unscaled seconds. Unknown fields
    raise `ValueError`.
    """
    parsed: dict[str, dict[str, Any]] = {}
    for key, values in raw.items():
        named = {ALIASES.get(name, name): value for name, value in values.items()}
        unknown = sorted(set(named) - _FIELDS)
        if unknown:
            raise ValueError(f"poll_schedules[{key!r}]: unknown field(s) {', '.join(unknown)}")
        if "learn" in named:
            named["learn"] = bool(named["learn"])
        parsed[key] = named
    return parsed


class DurationEstimator:
    """Typical upstream durations learnt from finished jobs, per model and action.

    A geometric running mean (durations are roughly log-normal), kept within a factor of four of
    the catalogue's figure so one odd task cannot derail the schedule. Per process, in memory:
    a restart simply starts again from the catalogue.
    """

    MIN_SAMPLES = 3
    WEIGHT = 0.2
    BOUND = 4.0

    def __init__(self) -> None:
        self._log_means: dict[tuple[str, str], tuple[float, int]] = {}

    def observe(self, model: str, action: str, seconds: float) -> None:
        if seconds <= 0 or not math.isfinite(seconds):
            return
        key = (model, action)
        value = math.log(seconds)
        mean, count = self._log_means.get(key, (value, 0))
        weight = max(self.WEIGHT, 1.0 / (count + 1))
        self._log_means[key] = (mean + weight * (value - mean), count + 1)

    def estimate(self, model: str, action: str, default: float) -> float | None:
        """The learnt typical duration (near ``default``), or None until enough jobs were seen."""
        mean, count = self._log_means.get((model, action), (0.0, 0))
        if count < self.MIN_SAMPLES:
            return None
        return min(default * self.BOUND, max(default / self.BOUND, math.exp(mean)))


class PollPlanner:
    """Poll schedules for every model, from the catalogue, ``POLL_SCHEDULES`` and the time scale.

    ``expected_seconds`` is looked up by the caller (the catalogue's figure for the action);
    overrides apply from the least to the most specific key: ``default``, provider, model,
    ``model:action``.
    """

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        time_scale: float = 1.0,
        estimator: DurationEstimator | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.overrides = parse_overrides(overrides or {})
        self.time_scale = time_scale
        self.estimator = estimator or DurationEstimator()
        self.rng = rng
        self._cache: dict[tuple[str, str, str, float], PollSchedule] = {}

    def schedule(
        self, *, provider: str, model: str, action: str, expected_seconds: float
    ) -> PollSchedule:
        """The scaled schedule for one kind of task."""
        key = (provider, model, action, expected_seconds)
        cached = self._cache.get(key)
        if cached is None:
            values: dict[str, Any] = {"expected_seconds": expected_seconds}
            for name in ("default", provider, model, f"{model}:{action}"):
                values.update(self.overrides.get(name, {}))
            cached = PollSchedule(**values).scaled(self.time_scale)
            self._cache[key] = cached
        return cached

    def first_poll_delay(
        self, *, provider: str, model: str, action: str, expected_seconds: float
    ) -> float:
        """Seconds from submit to the first poll, using what was learnt about this model."""
        schedule = self.schedule(
            provider=provider, model=model, action=action, expected_seconds=expected_seconds
        )
        learnt = (
            self.estimator.estimate(model, action, schedule.expected_seconds)
            if schedule.learn
            else None
        )
        return schedule.first_delay(expected_seconds=learnt, rng=self.rng)

    def deadline_seconds(
        self,
        *,
        provider: str,
        model: str,
        action: str,
        expected_seconds: float,
        requested: float | None,
    ) -> float:
        """A job's deadline after submit: its own ``deadline_seconds`` or the family default,
        either way times the time scale."""
        if requested is not None:
            return requested * self.time_scale
        return self.schedule(
            provider=provider, model=model, action=action, expected_seconds=expected_seconds
        ).default_deadline

    def reconcile_interval(self) -> float:
        return jittered(RECONCILE_INTERVAL_SECONDS * self.time_scale, 0.1, self.rng)

    def reconcile_window(self) -> float:
        return RECONCILE_WINDOW_SECONDS * self.time_scale

    def source_wait(self) -> float:
        return jittered(SOURCE_WAIT_SECONDS * self.time_scale, 0.1, self.rng)

    def submit_backoff(self, attempt: int) -> float:
        return submit_backoff(attempt, time_scale=self.time_scale, rng=self.rng)
