"""Turning a submit body into a :class:`TaskSpec`, or into the refusal MetaChat would send."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sim.catalogue import (
    BLEND_RULES,
    DEFAULT_BLEND_MODEL,
    FLUX_MODELS,
    MODELS,
    Body,
    Output,
    SubmitRoute,
)
from sim.config import SimConfig
from sim.params import params_are_valid
from sim.tasks import SimTask, TaskSpec

# Upstream wire text, full-width punctuation included.
PARAMS_REFUSAL = "绘图描述中存在错误的参数，请修改后重新提交。"  # noqa: RUF001
SOURCE_MISSING = "原任务不存在"
SOURCE_UNFINISHED = "原任务尚未完成，请稍后再试"  # noqa: RUF001
SOURCE_UNSUITABLE = "原任务不支持该操作"
MODE_REFUSAL = "params.mode: Expected 'pro' | 'max', received null"
MAX_PROMPT = 5000
MAX_REFERENCES = 5


@dataclass(frozen=True)
class Refusal:
    """A submit MetaChat turns down with HTTP 200 ``Fail`` and this message."""

    message: str


def enum_refusal(allowed: tuple[str, ...], received: object) -> Refusal:
    """The schema-validator text MetaChat sends for a model it does not know."""
    expected = " | ".join(f"'{m}'" for m in allowed)
    return Refusal(f"Invalid enum value. Expected {expected}, received '{received}'")


def parse_submit(
    route: SubmitRoute,
    body: object,
    config: SimConfig,
    tasks: Mapping[str, SimTask],
    now: float,
) -> TaskSpec | Refusal:
    """Validate ``body`` for ``route`` the way the upstream does."""
    if not isinstance(body, dict):
        return Refusal(PARAMS_REFUSAL)
    if route.body is Body.FOLLOW_UP:
        spec: TaskSpec | Refusal = _follow_up(route, body, config, tasks, now)
    else:
        spec = _fresh(route, body, config)
    if isinstance(spec, TaskSpec) and config.reject_marker and config.reject_marker in spec.prompt:
        return Refusal(PARAMS_REFUSAL)
    return spec


def _fresh(route: SubmitRoute, body: dict[str, object], config: SimConfig) -> TaskSpec | Refusal:
    model = body.get("model")
    if model is None and not route.model_required:
        model = DEFAULT_BLEND_MODEL
    if model not in route.models:
        return enum_refusal(route.models, "undefined" if model is None else model)
    assert isinstance(model, str)
    if config.flux_mode_required and model in FLUX_MODELS:
        params_seen = body.get("params")
        mode = params_seen.get("mode") if isinstance(params_seen, dict) else None
        if mode is None:
            # The schema's own words, before anything else is looked at (our assumption).
            return Refusal(MODE_REFUSAL)

    prompt = body.get("prompt", "")
    prompt_needed = route.body is Body.PROMPT
    if prompt is None:
        prompt = ""
    if (
        not isinstance(prompt, str)
        or len(prompt) > MAX_PROMPT
        or (prompt_needed and not prompt.strip())
    ):
        return Refusal(PARAMS_REFUSAL)

    params = body.get("params") or {}
    if not isinstance(params, dict):
        return Refusal(PARAMS_REFUSAL)
    rules = BLEND_RULES if route.body is Body.BLEND else MODELS[model].rules
    checked = config.strict_params and route.body is not Body.DESCRIBE
    if checked and not params_are_valid(params, rules):
        return Refusal(PARAMS_REFUSAL)

    images = _images(body.get("images"))
    if images is None or not _image_count_ok(route.body, images):
        return Refusal(PARAMS_REFUSAL)
    urls = tuple(u for u in images if u)
    if route.body is Body.FIRST_FRAME and len(urls) != 1:
        return Refusal(PARAMS_REFUSAL)
    return TaskSpec(
        route=route,
        model=model,
        prompt=prompt,
        params=dict(params),
        image_urls=urls,
        has_images=bool(images),
    )


def _image_count_ok(body: Body, images: list[str]) -> bool:
    count = len(images)
    if body is Body.DESCRIBE or body is Body.FIRST_FRAME:
        return count == 1
    if body is Body.BLEND:
        return 2 <= count <= 5
    return count <= MAX_REFERENCES


def _images(raw: object) -> list[str] | None:
    """The reference images as URLs ("" for inline base64 ones), or None when malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        return None
    found: list[str] = []
    for item in raw:
        if not isinstance(item, dict):
            return None
        url, b64 = item.get("url"), item.get("b64")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            found.append(url)
        elif isinstance(b64, str) and b64.startswith("data:"):
            found.append("")
        else:
            return None
    return found


def _follow_up(
    route: SubmitRoute,
    body: dict[str, object],
    config: SimConfig,
    tasks: Mapping[str, SimTask],
    now: float,
) -> TaskSpec | Refusal:
    source_id = body.get("id")
    if not isinstance(source_id, str) or not source_id:
        return Refusal(PARAMS_REFUSAL)
    arg = None
    if route.arg is not None:
        arg = body.get(route.arg.name)
        if not route.arg.rule.accepts(arg):
            return Refusal(PARAMS_REFUSAL)
    source = tasks.get(source_id)
    if source is None or source.spec.route.family.value != "midjourney":
        return Refusal(SOURCE_MISSING)
    if not source.is_done(now) or not source.succeeds:
        return Refusal(SOURCE_UNFINISHED if not source.is_done(now) else SOURCE_UNSUITABLE)
    if source.output not in (Output.GRID, Output.SINGLE):
        return Refusal(SOURCE_UNSUITABLE)
    if config.strict_sources and source.output is not route.needs_source:
        return Refusal(SOURCE_UNSUITABLE)
    remix = body.get("prompt")
    prompt = remix if isinstance(remix, str) and remix.strip() else source.spec.prompt
    return TaskSpec(
        route=route,
        model=source.spec.model,
        prompt=prompt,
        source_id=source_id,
        arg=arg,
    )
