"""Checking a job spec against the catalogue, with errors that point at the offending field.

`SpecError.errors` is a list of ``(loc, msg)`` pairs shaped like the API's 422 ``errors`` entries:
``("params", "aspect")``, ``("images", 0, "url")``, ``("source", "index")``, ``("model",)``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from metachat.images import image_problem
from metachat.specs import ActionSpec, ImageRule, ModelSpec, ValidatedSpec

Loc = tuple[str | int, ...]

MAX_URL_CHARS = 2048
INDEX_RANGE = range(1, 5)
_DATA_URL = re.compile(
    r"^data:(?P<mime>image/(?:png|jpeg|webp|gif));base64,(?P<payload>[A-Za-z0-9+/=\s]+)$"
)


class SpecError(ValueError):
    """A job spec the catalogue refuses; ``errors`` lists every ``(loc, msg)`` found."""

    def __init__(self, errors: Sequence[tuple[Loc, str]]) -> None:
        self.errors: list[tuple[Loc, str]] = list(errors)
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in self.errors))


class UnknownModel(SpecError):
    """The model id is not in the catalogue."""

    def __init__(self, model_id: str, known: Iterable[str]) -> None:
        self.model_id = model_id
        super().__init__([(("model",), f"unknown model {model_id!r}; known: {', '.join(known)}")])


class UnknownAction(SpecError):
    """The model has no such action."""

    def __init__(self, model_id: str, action: str, known: Iterable[str]) -> None:
        self.model_id = model_id
        self.action = action
        super().__init__(
            [(("action",), f"{model_id} has no action {action!r}; known: {', '.join(known)}")]
        )


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def validate_spec(
    model: ModelSpec,
    action: ActionSpec,
    *,
    prompt: str | None,
    params: object,
    images: object,
    has_source: bool,
    source_index: int | None,
    source_model: ModelSpec | None,
    source_action: str | None,
) -> ValidatedSpec:
    """Check every field of a job spec; raise `SpecError` listing all faults at once."""
    errors: list[tuple[Loc, str]] = []
    clean_prompt = _check_prompt(action, prompt, errors)
    clean_params = _check_params(action, params, errors)
    _check_source(model, action, has_source, source_index, source_model, source_action, errors)
    images_rule = action.images
    if has_source and action.source is not None and action.source.replaces_images:
        images_rule = ImageRule()
    clean_images = _check_images(action.name, images_rule, images, errors)
    chat = action.body == "openai_chat"
    if chat and not errors and clean_prompt is None and not clean_params.get("messages"):
        errors.append((("params", "messages"), "a chat needs messages or a prompt"))
    if errors:
        raise SpecError(errors)
    return ValidatedSpec(
        provider=model.provider,
        family=model.family,
        model=model.id,
        action=action.name,
        prompt=clean_prompt,
        params=clean_params,
        images=clean_images,
        has_source=has_source,
        source_index=source_index if action.needs_index else None,
        result_field=action.result_field,
        produces=action.produces,
        expected_seconds=action.expected_seconds,
        price_points=action.price_points,
    )


def _check_prompt(action: ActionSpec, prompt: object, errors: list[tuple[Loc, str]]) -> str | None:
    rule = action.prompt
    if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
        if rule.required:
            errors.append((("prompt",), f"a prompt is required for {action.name}"))
        return None
    if not isinstance(prompt, str):
        errors.append((("prompt",), "must be a string"))
        return None
    if not rule.allowed:
        errors.append((("prompt",), f"{action.name} takes no prompt"))
        return None
    if len(prompt) > rule.max_chars:
        errors.append((("prompt",), f"must be at most {rule.max_chars} characters"))
        return None
    return prompt


def _check_params(
    action: ActionSpec, params: object, errors: list[tuple[Loc, str]]
) -> dict[str, Any]:
    if params is None:
        params = {}
    if not isinstance(params, dict):
        errors.append((("params",), "must be an object"))
        return {}
    try:
        parsed = action.params_model.model_validate(params)
    except ValidationError as exc:
        for item in exc.errors(include_url=False):
            errors.append((("params", *item["loc"]), item["msg"]))
        return {}
    return parsed.model_dump(mode="json", exclude_none=True)


def _check_source(
    model: ModelSpec,
    action: ActionSpec,
    has_source: bool,
    source_index: int | None,
    source_model: ModelSpec | None,
    source_action: str | None,
    errors: list[tuple[Loc, str]],
) -> None:
    rule = action.source
    if rule is None:
        if has_source:
            errors.append((("source",), f"{action.name} does not work on an earlier job"))
        return
    if not has_source:
        if rule.required:
            errors.append((("source",), f"{action.name} needs a source job"))
        return
    if rule.needs_index:
        if source_index is None:
            errors.append((("source", "index"), f"{action.name} needs an index 1..4"))
        elif isinstance(source_index, bool) or source_index not in INDEX_RANGE:
            errors.append((("source", "index"), "must be 1, 2, 3 or 4"))
    elif source_index is not None:
        errors.append((("source", "index"), f"{action.name} takes no index"))
    if source_model is not None and source_model.provider != model.provider:
        errors.append((("source", "job_id"), f"{action.name} needs a {model.provider} source job"))
    elif source_action is not None and source_action not in rule.from_actions:
        allowed = ", ".join(sorted(rule.from_actions))
        errors.append(
            (
                ("source", "job_id"),
                f"{action.name} works on the output of {allowed}, not {source_action}",
            )
        )


def _check_images(
    action_name: str, rule: ImageRule, images: object, errors: list[tuple[Loc, str]]
) -> list[dict[str, Any]]:
    if images is None:
        images = []
    if not isinstance(images, list):
        errors.append((("images",), "must be a list"))
        return []
    count = len(images)
    if count < rule.min_count or count > rule.max_count:
        errors.append((("images",), _count_message(action_name, rule, count)))
        return []
    clean: list[dict[str, Any]] = []
    for index, item in enumerate(images):
        url = _check_image(rule, index, item, errors)
        if url is not None:
            clean.append({"url": url})
    return clean


def _count_message(action_name: str, rule: ImageRule, count: int) -> str:
    if rule.max_count == 0:
        return f"{action_name} takes no images"
    if rule.min_count == rule.max_count:
        wanted = f"exactly {rule.min_count}"
    else:
        wanted = f"{rule.min_count} to {rule.max_count}"
    noun = rule.noun if rule.max_count == 1 else rule.noun.replace("image", "images", 1)
    return f"{action_name} takes {wanted} {noun}, got {count}"


def _check_image(
    rule: ImageRule, index: int, item: object, errors: list[tuple[Loc, str]]
) -> str | None:
    if not isinstance(item, dict):
        errors.append((("images", index), 'must be an object like {"url": "https://..."}'))
        return None
    for key in item:
        if key != "url":
            errors.append((("images", index, str(key)), "Extra inputs are not permitted"))
    url = item.get("url")
    loc: Loc = ("images", index, "url")
    if not isinstance(url, str) or not url:
        errors.append((loc, "a URL string is required"))
        return None
    problem = _data_url_problem(rule, url) if url.startswith("data:") else _http_url_problem(url)
    if problem:
        errors.append((loc, problem))
        return None
    return url


def _http_url_problem(url: str) -> str | None:
    if len(url) > MAX_URL_CHARS:
        return f"must be at most {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http(s) URL"
    return None


def _data_url_problem(rule: ImageRule, url: str) -> str | None:
    if not rule.allow_data_url:
        return "must be an http(s) URL (this model does not take inline images)"
    match = _DATA_URL.match(url)
    if match is None:
        return "must be data:image/(png|jpeg|webp|gif);base64,..."
    try:
        raw = base64.b64decode("".join(match["payload"].split()), validate=True)
    except (binascii.Error, ValueError):
        return "the base64 payload does not decode"
    if len(raw) > rule.max_data_url_bytes:
        return f"inline images may be at most {rule.max_data_url_bytes} bytes"
    return image_problem(raw)
