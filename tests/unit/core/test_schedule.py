"""Poll schedules and back-off: what a user notices is how soon and how often jobs are looked at."""

from __future__ import annotations

import random

import pytest

from core.schedule import (
    DurationEstimator,
    PollPlanner,
    PollSchedule,
    exponential_backoff,
    jittered,
    predicted_remaining,
    submit_backoff,
)


def no_jitter(**values: float) -> PollSchedule:
    return PollSchedule(**{"expected_seconds": 40.0, "jitter": 0.0, **values})  # type: ignore[arg-type]


def test_the_first_poll_comes_a_little_before_the_typical_duration() -> None:
    assert no_jitter(expected_seconds=40.0).first_delay(expected_seconds=40.0) == pytest.approx(
        32.0
    )


def test_the_first_poll_comes_earlier_while_the_duration_is_only_the_catalogues_guess() -> None:
    assert no_jitter(expected_seconds=40.0).first_delay() == pytest.approx(26.0)


def test_an_explicit_first_poll_wins_over_the_typical_duration() -> None:
    assert no_jitter(first_seconds=3.0).first_delay() == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("elapsed", "expected_gap"),
    [
        pytest.param(0.0, 0.5, id="never-below-the-minimum"),
        pytest.param(40.0, 10.0, id="a-quarter-of-the-time-spent"),
        pytest.param(1000.0, 30.0, id="capped"),
    ],
)
def test_later_gaps_grow_with_the_time_already_spent(elapsed: float, expected_gap: float) -> None:
    assert no_jitter().next_delay(elapsed=elapsed) == pytest.approx(expected_gap)


def test_progress_readings_pull_the_next_poll_to_the_predicted_finish() -> None:
    schedule = no_jitter(prediction_margin=1.0)
    # 50 % → 75 % in 10 s: the last quarter takes another 10 s, sooner than the 12.5 s gap.
    gap = schedule.next_delay(
        elapsed=50.0, progress=75, previous_elapsed=40.0, previous_progress=50
    )
    assert gap == pytest.approx(10.0)


def test_a_slow_prediction_never_delays_the_poll_beyond_the_growing_gap() -> None:
    gap = no_jitter().next_delay(
        elapsed=40.0, progress=11, previous_elapsed=30.0, previous_progress=10
    )
    assert gap == pytest.approx(10.0)


@pytest.mark.parametrize(
    ("progress", "previous"),
    [
        pytest.param(None, 10, id="no-progress-reported"),
        pytest.param(40, 40, id="progress-stalled"),
        pytest.param(30, 40, id="progress-went-back"),
        pytest.param(100, 40, id="already-complete"),
    ],
)
def test_no_prediction_without_moving_progress(progress: int | None, previous: int) -> None:
    assert (
        predicted_remaining(
            elapsed=20.0, progress=progress, previous_elapsed=10.0, previous_progress=previous
        )
        is None
    )


def test_jitter_stays_within_its_fraction() -> None:
    rng = random.Random(1)
    values = [jittered(10.0, 0.1, rng) for _ in range(1000)]
    assert min(values) >= 9.0
    assert max(values) <= 11.0
    assert len(set(values)) > 900


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        pytest.param(1, 2.0, id="first-retry"),
        pytest.param(3, 8.0, id="doubles"),
        pytest.param(10, 120.0, id="capped"),
        pytest.param(10_000, 120.0, id="huge-attempt-does-not-overflow"),
    ],
)
def test_submit_backoff_doubles_up_to_a_cap(attempt: int, expected: float) -> None:
    assert exponential_backoff(attempt, base=2.0, cap=120.0, jitter=0.0) == pytest.approx(expected)


def test_the_time_scale_shrinks_submit_backoff() -> None:
    rng = random.Random(3)
    assert submit_backoff(1, time_scale=0.01, rng=rng) <= 0.025


def test_the_planner_scales_every_interval_and_the_default_deadline() -> None:
    planner = PollPlanner(time_scale=0.1)
    schedule = planner.schedule(
        provider="midjourney", model="mj-v7", action="imagine", expected_seconds=45.0
    )
    assert schedule.expected_seconds == pytest.approx(4.5)
    assert schedule.min_interval == pytest.approx(0.05)
    assert schedule.max_interval == pytest.approx(3.0)
    assert schedule.default_deadline == pytest.approx(90.0)
    deadline = planner.deadline_seconds(
        provider="midjourney",
        model="mj-v7",
        action="imagine",
        expected_seconds=45.0,
        requested=300.0,
    )
    assert deadline == pytest.approx(30.0)


def test_more_specific_overrides_win() -> None:
    planner = PollPlanner(
        {
            "default": {"max_interval": 20.0, "growth": 0.5},
            "midjourney": {"max_interval": 10.0},
            "mj-v7:upscale": {"first_seconds": 2.0},
        }
    )
    upscale = planner.schedule(
        provider="midjourney", model="mj-v7", action="upscale", expected_seconds=40.0
    )
    flux = planner.schedule(
        provider="flux", model="flux-2-pro", action="generate", expected_seconds=15.0
    )
    assert (upscale.max_interval, upscale.growth, upscale.first_seconds) == (10.0, 0.5, 2.0)
    assert (flux.max_interval, flux.first_seconds) == (20.0, None)


def test_an_unknown_override_field_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="poll_schedules\\['flux'\\]: unknown field"):
        PollPlanner({"flux": {"frist_seconds": 1.0}})


def test_an_impossible_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="max_interval"):
        PollSchedule(expected_seconds=10.0, min_interval=5.0, max_interval=1.0)


def test_learnt_durations_replace_the_catalogue_figure_after_a_few_jobs() -> None:
    estimator = DurationEstimator()
    assert estimator.estimate("grok", "generate", 15.0) is None
    for _ in range(20):
        estimator.observe("grok", "generate", 10.0)
    assert estimator.estimate("grok", "generate", 15.0) == pytest.approx(10.0)


def test_a_learnt_duration_stays_within_bounds_of_the_catalogue() -> None:
    estimator = DurationEstimator()
    for _ in range(20):
        estimator.observe("odd", "generate", 10_000.0)
    assert estimator.estimate("odd", "generate", 10.0) == pytest.approx(40.0)


def test_the_first_poll_follows_what_was_learnt() -> None:
    planner = PollPlanner({"default": {"jitter": 0.0}})
    for _ in range(10):
        planner.estimator.observe("flux-2-pro", "generate", 10.0)
    first = planner.first_poll_delay(
        provider="flux", model="flux-2-pro", action="generate", expected_seconds=15.0
    )
    assert first == pytest.approx(8.0)


def test_short_names_are_accepted_in_overrides() -> None:
    planner = PollPlanner({"flux": {"first": 3.0, "max": 12.0, "deadline": 90.0, "learn": 0.0}})
    schedule = planner.schedule(
        provider="flux", model="flux-2-pro", action="generate", expected_seconds=15.0
    )
    assert (schedule.first_seconds, schedule.max_interval, schedule.default_deadline) == (
        3.0,
        12.0,
        90.0,
    )
    assert schedule.learn is False
