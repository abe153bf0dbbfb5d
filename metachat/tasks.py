"""What goes to MetaChat and what comes back, in our vocabulary rather than MetaChat's envelope."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from metachat.specs import ValidatedSpec

TaskStatus = Literal["queued", "running", "succeeded", "failed"]
"""An upstream task's state in our words; MetaChat's ``submitted``/``in_progress``/... map here."""

TERMINAL_STATUSES: frozenset[TaskStatus] = frozenset({"succeeded", "failed"})


@dataclass(frozen=True)
class SubmitRequest:
    """One task to create upstream; the client builds the action's body from it.

    ``source_task_id`` / ``source_index`` are the earlier job's *upstream* task id and tile
    (1..4) for Midjourney follow-ups.
    """

    model: str
    action: str
    prompt: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    images: Sequence[Mapping[str, Any]] = ()
    source_task_id: str | None = None
    source_index: int | None = None

    @classmethod
    def from_spec(cls, spec: ValidatedSpec, *, source_task_id: str | None = None) -> SubmitRequest:
        """The request for a spec the catalogue validated."""
        return cls(
            model=spec.model,
            action=spec.action,
            prompt=spec.prompt,
            params=spec.params,
            images=spec.images,
            source_task_id=source_task_id,
            source_index=spec.source_index,
        )


@dataclass(frozen=True)
class UpstreamTask:
    """One upstream task as last seen.

    ``points`` is None when MetaChat did not say (unknown, not free). ``progress`` is 0..100 or
    None. ``video_urls`` lists every clip of a task that made several (a Midjourney video
    ``batch_size``); ``video_url`` is the first. ``raw`` is the task object exactly as received.
    """

    task_id: str
    status: TaskStatus
    progress: int | None = None
    image_urls: list[str] = field(default_factory=list)
    video_url: str | None = None
    video_urls: list[str] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)
    points: int | None = None
    failure_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True)
class UsageRecord:
    """One line of the account's point usage."""

    task_id: str
    model: str | None
    points: int
    created_at: datetime | None
