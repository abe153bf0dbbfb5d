"""MetaChat's ``data`` objects as our records; the one place upstream statuses map to ours."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

from metachat.errors import UpstreamInvalidResponse
from metachat.specs import ResultField
from metachat.tasks import TaskStatus, UpstreamTask, UsageRecord

STATUS_WORDS: dict[str, TaskStatus] = {
    "submitted": "queued",
    "in_progress": "running",
    "success": "succeeded",
    "failure": "failed",
    # Not seen from MetaChat; the Midjourney relays it resembles use these words.
    "not_start": "queued",
    "cancel": "failed",
    "cancelled": "failed",
    "canceled": "failed",
}
"""MetaChat's status words (compared case-insensitively) → ours."""

STATUS_CODES: dict[int, TaskStatus] = {10: "queued", 20: "running", 30: "succeeded", 40: "failed"}
"""Numeric statuses one public Midjourney client accepts alongside the words."""


def task_status(value: object) -> TaskStatus:
    """Our status for an upstream ``status`` value; `UpstreamInvalidResponse` if unknown."""
    if isinstance(value, int) and not isinstance(value, bool) and value in STATUS_CODES:
        return STATUS_CODES[value]
    if isinstance(value, str):
        word = value.strip().lower()
        if word in STATUS_WORDS:
            return STATUS_WORDS[word]
        if word.isdigit() and int(word) in STATUS_CODES:
            return STATUS_CODES[int(word)]
    raise UpstreamInvalidResponse(f"unknown upstream task status {value!r}")


def submitted_task_id(data: object) -> str:
    """The new task's id from a submit answer's ``data``."""
    task_id = data.get("id") if isinstance(data, dict) else None
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)
    if not isinstance(task_id, str) or not task_id.strip():
        raise UpstreamInvalidResponse("submit answer has no data.id")
    return task_id.strip()


def upstream_task(data: object, *, task_id: str, result_field: ResultField) -> UpstreamTask:
    """Normalise a result answer's ``data``; a success must carry the action's output field
    (a describe excepted: see `DESCRIBE_FIELDS`)."""
    if not isinstance(data, dict):
        raise UpstreamInvalidResponse(f"result for task {task_id} has no data object")
    status = task_status(data.get("status"))
    image_urls = _image_urls(data, prefer_list=result_field != "image_url")
    video_urls = _string_list(data, "video_urls")
    video_url = _optional_str(data, "video_url") or (video_urls[0] if video_urls else None)
    if video_url is not None and video_url not in video_urls:
        video_urls = [video_url, *video_urls]
    prompts = _prompts(data, describe=result_field == "prompts")
    task = UpstreamTask(
        task_id=task_id,
        status=status,
        progress=_progress(data.get("progress")),
        image_urls=image_urls,
        video_url=video_url,
        video_urls=video_urls,
        prompts=prompts,
        points=_whole_points(data.get("total_points"), "total_points"),
        failure_reason=_optional_str(data, "fail_reason") if status == "failed" else None,
        raw=data,
    )
    if status == "succeeded" and not _has_output(task, result_field):
        raise UpstreamInvalidResponse(f"task {task_id} succeeded without {result_field}")
    return task


def balance_points(data: object) -> int | None:
    """``data.balance`` as whole points; None when MetaChat does not say."""
    if not isinstance(data, dict):
        raise UpstreamInvalidResponse("balance answer has no data object")
    balance = _number(data.get("balance"), "balance")
    # Round down: a fraction of a point cannot pay for anything.
    return None if balance is None else math.floor(balance)


def usage_records(data: object) -> list[UsageRecord]:
    """``data.records[]`` (or a bare list) as `UsageRecord` rows."""
    rows = data.get("records") if isinstance(data, dict) else data
    if rows is None:
        return []
    if not isinstance(rows, list):
        raise UpstreamInvalidResponse("usage answer has no records list")
    return [_usage_record(row) for row in rows]


def _usage_record(row: object) -> UsageRecord:
    if not isinstance(row, dict):
        raise UpstreamInvalidResponse("usage record is not an object")
    task_id = row.get("task_id")
    if not isinstance(task_id, str | int) or isinstance(task_id, bool) or task_id == "":
        raise UpstreamInvalidResponse("usage record has no task_id")
    model = row.get("model")
    points = _number(row.get("points"), "points")
    return UsageRecord(
        task_id=str(task_id),
        model=model if isinstance(model, str) else None,
        points=0 if points is None else math.ceil(points),
        created_at=_timestamp(row.get("created_at")),
    )


def _string_list(data: dict[str, Any], key: str) -> list[str]:
    listed = data.get(key)
    if listed is not None and (
        not isinstance(listed, list) or not all(isinstance(u, str) for u in listed)
    ):
        raise UpstreamInvalidResponse(f"{key} is not a list of strings")
    return [u for u in listed or [] if u]


def _image_urls(data: dict[str, Any], *, prefer_list: bool) -> list[str]:
    urls = _string_list(data, "image_urls")
    single = _optional_str(data, "image_url")
    single_list = [single] if single else []
    # Midjourney reports one grid in image_url; generic models a list. Either may carry both.
    if prefer_list:
        return urls or single_list
    return single_list or urls


DESCRIBE_FIELDS = (
    "prompts",
    "prompt",
    "descriptions",
    "description",
    "results",
    "result",
    "texts",
    "text",
    "content",
)
"""Where a describe task's prompts have been seen or may plausibly be, first match wins."""

# Midjourney numbers its four descriptions with keycap digits ("1️⃣ …"), one per paragraph.
_KEYCAP = re.compile(r"(?=[1-9]\ufe0f?\u20e3)")
_PARAGRAPH = re.compile(r"\n\s*\n")


def _prompts(data: dict[str, Any], *, describe: bool) -> list[str]:
    if not describe:
        prompts = data.get("prompts")
        if prompts is None:
            return []
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise UpstreamInvalidResponse("prompts is not a list of strings")
        return [p for p in prompts if p.strip()]
    # A describe task is paid for: whatever field the prompts come in, read them rather than
    # fail (the whole answer is kept in ``raw`` too). It has no input prompt, so a ``prompt``
    # can only be its output.
    for key in DESCRIBE_FIELDS:
        found = _texts(data.get(key))
        if found:
            return found
    return []


def _texts(value: object) -> list[str]:
    """A list of strings, or one string holding several numbered paragraphs, as prompts."""
    if isinstance(value, list):
        return [item.strip() for item in value if isinstance(item, str) and item.strip()]
    if not isinstance(value, str) or not value.strip():
        return []
    text = value.strip()
    parts = _KEYCAP.split(text) if _KEYCAP.search(text[1:]) else _PARAGRAPH.split(text)
    return [part.strip() for part in parts if part.strip()]


def _has_output(task: UpstreamTask, field: ResultField) -> bool:
    if field in ("image_url", "image_urls"):
        return bool(task.image_urls)
    if field == "video_url":
        return task.video_url is not None
    # A finished describe with prompts in a field nobody has seen still succeeds: it is paid
    # for, its answer is kept in ``raw``, and failing or retrying it would not bring the text.
    return True


def _optional_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UpstreamInvalidResponse(f"{key} is not a string")
    return value


def _progress(value: object) -> int | None:
    # Progress is advisory: an odd value is dropped rather than failing a paid task.
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip().rstrip("%"))
        except ValueError:
            number = None
    if number is None or not math.isfinite(number):
        return None
    return min(max(round(number), 0), 100)


def _number(value: object, key: str) -> float | None:
    if value is None or value == "":
        return None
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number < 0:
        raise UpstreamInvalidResponse(f"{key} is not a non-negative number")
    return number


def _whole_points(value: object, key: str) -> int | None:
    number = _number(value, key)
    if number is None:
        return None
    if number != int(number):
        raise UpstreamInvalidResponse(f"{key} is not a whole number")
    return int(number)


def _timestamp(value: object) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace(" ", "T", 1))
        except ValueError:
            raise UpstreamInvalidResponse(f"created_at {value!r} is not a timestamp") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise UpstreamInvalidResponse("created_at is not a timestamp")
