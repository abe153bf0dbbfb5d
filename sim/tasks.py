"""Simulated upstream tasks: how each one is planned at submit time and what it shows later.

A task's whole future (queue wait, run time, outcome, price) is drawn once, from a random stream
derived from the seed and the task's number, so polling more or less often never changes it.
"""

from __future__ import annotations

import heapq
import math
import random
from dataclasses import dataclass, field
from enum import StrEnum

from sim.catalogue import (
    DEFAULT_ACTION_POINTS,
    DEFAULT_DURATIONS,
    DEFAULT_MODEL_POINTS,
    MODELS,
    Family,
    Output,
    SubmitRoute,
)
from sim.config import SimConfig


class TaskStatus(StrEnum):
    """MetaChat's task statuses, in order."""

    SUBMITTED = "submitted"
    IN_PROGRESS = "in_progress"
    SUCCESS = "success"
    FAILURE = "failure"


NUMERIC_STATUS = {
    TaskStatus.SUBMITTED: 10,
    TaskStatus.IN_PROGRESS: 20,
    TaskStatus.SUCCESS: 30,
    TaskStatus.FAILURE: 40,
}

MODERATION_REASON = "内容审核未通过"
REFERENCE_REASON = "参考图无法下载"
GENERIC_REASON = "生成失败，请稍后重试"  # noqa: RUF001


@dataclass(frozen=True)
class TaskSpec:
    """A submit that passed validation: everything needed to plan a task."""

    route: SubmitRoute
    model: str
    prompt: str
    params: dict[str, object] = field(default_factory=dict)
    image_urls: tuple[str, ...] = ()
    has_images: bool = False
    source_id: str | None = None
    arg: object = None

    @property
    def dedupe_key(self) -> str:
        """What identifies "the same submit twice" for the double-submit counters."""
        if self.source_id is not None:
            suffix = "" if self.arg is None else f" {self.arg}"
            return f"{self.route.action} {self.source_id}{suffix}"
        if self.prompt:
            return self.prompt
        return f"{self.route.action} " + " ".join(self.image_urls)


@dataclass
class SimTask:
    """One task as the upstream holds it."""

    id: str
    number: int
    spec: TaskSpec
    points: int
    created_at: float
    started_at: float
    finished_at: float
    succeeds: bool
    fail_reason: str | None
    outputs: int
    prompts: tuple[str, ...] = ()
    polls: int = 0
    settled: bool = False

    @property
    def family(self) -> Family:
        return self.spec.route.family

    @property
    def output(self) -> Output:
        return self.spec.route.output

    def state_at(self, now: float) -> tuple[TaskStatus, int]:
        """Status and integer progress (0..100) as seen at ``now``."""
        if now >= self.finished_at:
            return (TaskStatus.SUCCESS, 100) if self.succeeds else (TaskStatus.FAILURE, 0)
        if now < self.started_at:
            return TaskStatus.SUBMITTED, 0
        fraction = (now - self.started_at) / (self.finished_at - self.started_at)
        return TaskStatus.IN_PROGRESS, min(99, max(1, int(fraction * 100)))

    def is_done(self, now: float) -> bool:
        return now >= self.finished_at

    def view(self, now: float) -> dict[str, object]:
        """Internal snapshot for the admin route."""
        status, progress = self.state_at(now)
        return {
            "id": self.id,
            "path": self.spec.route.path,
            "model": self.spec.model,
            "prompt": self.spec.prompt,
            "status": status.value,
            "progress": progress,
            "points": self.points,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "polls": self.polls,
            "source_id": self.spec.source_id,
        }


def price_of(spec: TaskSpec, config: SimConfig) -> int:
    """Points a task costs: per picture, per 5 s of Grok video, per Midjourney action or clip."""
    route = spec.route
    # A partial table in the config overrides only the entries it names.
    if route.action in config.action_points or route.action in DEFAULT_ACTION_POINTS:
        return config.action_points.get(route.action, DEFAULT_ACTION_POINTS[route.action])
    base = config.points.get(spec.model, DEFAULT_MODEL_POINTS.get(spec.model, 0))
    if route.family is Family.VIDEO:
        duration = spec.params.get("duration", 5)
        seconds = duration if isinstance(duration, int) else 5
        return math.ceil(base * seconds / 5)
    if route.output in (Output.IMAGES, Output.VIDEO):
        return base * output_count(spec)
    return base


def output_count(spec: TaskSpec) -> int:
    """How many files a succeeded task yields (``params.num`` for image models,
    ``params.batch_size`` for Midjourney clips)."""
    if spec.route.output is Output.IMAGES:
        num = spec.params.get("num", 1)
        return num if isinstance(num, int) else 1
    if spec.route.output is Output.VIDEO:
        batch = spec.params.get("batch_size", 1)
        return batch if isinstance(batch, int) else 1
    if spec.route.output is Output.PROMPTS:
        return 0
    return 1


def task_random(config: SimConfig, number: int) -> random.Random:
    """The random stream that decides task ``number``'s id and future."""
    return random.Random(f"{config.seed}:task:{number}")


def plan_task(spec: TaskSpec, config: SimConfig, number: int, now: float) -> SimTask:
    """Draw a new task's id, timing and outcome."""
    rng = task_random(config, number)
    task_id = f"{rng.getrandbits(128):032x}"
    duration_class = spec.route.duration_class or MODELS[spec.model].duration_class
    median = config.durations.get(duration_class, DEFAULT_DURATIONS.get(duration_class, 10.0))
    duration = median * math.exp(config.duration_sigma * rng.gauss(0.0, 1.0)) * config.time_scale
    if config.instant:
        duration = 0.0
    started_at = now + duration * config.queue_fraction
    forced_failure = bool(config.fail_marker) and config.fail_marker in spec.prompt
    succeeds = not forced_failure and rng.random() >= config.fail_rate
    fail_reason = None
    finished_at = now + duration
    if not succeeds:
        fail_reason = MODERATION_REASON if forced_failure else _fail_reason(spec, rng)
        finished_at = started_at + (finished_at - started_at) * rng.uniform(0.3, 1.0)
    prompts = _described_prompts(rng) if spec.route.output is Output.PROMPTS else ()
    return SimTask(
        id=task_id,
        number=number,
        spec=spec,
        points=price_of(spec, config),
        created_at=now,
        started_at=started_at,
        finished_at=finished_at,
        succeeds=succeeds,
        fail_reason=fail_reason,
        outputs=output_count(spec),
        prompts=prompts,
    )


def _fail_reason(spec: TaskSpec, rng: random.Random) -> str:
    reasons = [MODERATION_REASON, GENERIC_REASON]
    if spec.has_images:
        reasons.append(REFERENCE_REASON)
    return rng.choice(reasons)


_SUBJECTS = ("a lighthouse", "a red fox", "a glass teapot", "an old tram", "a mountain lake")
_STYLES = ("soft morning light", "ink wash", "studio product shot", "cinematic, 35mm", "watercolor")


def _described_prompts(rng: random.Random) -> tuple[str, ...]:
    return tuple(
        f"{n}\ufe0f\u20e3 {rng.choice(_SUBJECTS)}, {rng.choice(_STYLES)} --ar 1:1"
        for n in range(1, 5)
    )


@dataclass(frozen=True)
class UsageRecord:
    """One charge on the account: a task that succeeded."""

    task_id: str
    model: str
    points: int
    at: float


class TaskBook:
    """All tasks, the account balance, and the charges made so far."""

    def __init__(self, starting_balance: int) -> None:
        self.balance = starting_balance
        self.reserved = 0
        self.tasks: dict[str, SimTask] = {}
        self.usage: list[UsageRecord] = []
        self._pending: list[tuple[float, int, str]] = []

    def add(self, task: SimTask) -> None:
        """Record a new task; its price is held against the balance until it ends."""
        self.tasks[task.id] = task
        self.reserved += task.points
        heapq.heappush(self._pending, (task.finished_at, task.number, task.id))

    def find(
        self, task_id: str, family: Family, *, video_result_has_clips: bool = True
    ) -> SimTask | None:
        """The task with ``task_id`` if the result path of ``family`` answers for it.

        ``video_result_has_clips``: the "video result" page answers for Midjourney clips too.
        """
        task = self.tasks.get(task_id)
        if task is None:
            return None
        if task.family is family:
            return task
        if video_result_has_clips and family is Family.VIDEO and task.output is Output.VIDEO:
            return task
        return None

    def settle(self, now: float) -> None:
        """Charge every task that has succeeded by ``now`` and release every ended one's hold."""
        while self._pending and self._pending[0][0] <= now:
            _, _, task_id = heapq.heappop(self._pending)
            task = self.tasks[task_id]
            task.settled = True
            self.reserved -= task.points
            if task.succeeds:
                self.balance -= task.points
                self.usage.append(
                    UsageRecord(task.id, task.spec.model, task.points, task.finished_at)
                )

    def available(self) -> int:
        """Points not already held by running tasks."""
        return self.balance - self.reserved

    def counts(self, now: float) -> dict[str, int]:
        """Tasks by current status."""
        counts = {s.value: 0 for s in TaskStatus}
        for task in self.tasks.values():
            counts[task.state_at(now)[0].value] += 1
        return counts
