"""What the catalogue is made of: one `ModelSpec` per upstream model, one `ActionSpec` per verb.

These are plain frozen records; `metachat.catalogue` fills them from the default table and
the operator's overrides, and `metachat.validation` checks a job spec against them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote

from metachat.params import Params

Provider = Literal[
    "midjourney", "flux", "z-image", "seedream", "grok", "gpt-image", "google-image", "chat"
]
"""Our provider vocabulary: the unit of rate limits and stats."""

PROVIDERS: tuple[Provider, ...] = (
    "midjourney",
    "flux",
    "z-image",
    "seedream",
    "grok",
    "gpt-image",
    "google-image",
    "chat",
)

SYNC_PROVIDERS: frozenset[Provider] = frozenset({"gpt-image", "google-image", "chat"})
"""Providers on the OpenAI-compatible host: each job is one synchronous call."""

Family = Literal["midjourney", "image", "video", "openai-image", "openai-chat"]
"""The upstream endpoint family a model is served by. The ``openai-*`` families live on the
OpenAI-compatible host (``METACHAT_LLM_BASE_URL``) and answer in one synchronous call."""

ResultField = Literal["image_url", "image_urls", "video_url", "prompts", "b64_json", "message"]
"""The field of the upstream answer that carries an action's output."""

Produces = Literal["grid", "image", "images", "video", "prompts", "text"]
"""What a finished task holds: a 2x2 Midjourney grid, one image, a list of images, ..."""

BodyShape = Literal["generate", "follow_up", "openai_images", "openai_edits", "openai_chat"]
"""How the submit body is built.

``generate``: ``{model, prompt?, params?, images?}``.
``follow_up``: ``{id: <source task id>, index?, **params}`` for Midjourney transforms.
``openai_images`` / ``openai_edits`` / ``openai_chat``: the OpenAI request shapes
(`metachat.openai`); these actions are synchronous: the answer is the result.
"""

SYNC_BODIES: frozenset[str] = frozenset({"openai_images", "openai_edits", "openai_chat"})


@dataclass(frozen=True)
class UsagePrices:
    """Points from the usage a synchronous answer reports (all our settings: no price is
    published). ``None`` everywhere means the cost is unknown, never 0.

    ``per_image``: each image returned. ``per_1k_input_tokens`` / ``per_1k_output_tokens``:
    each thousand tokens of the answer's ``usage``. The sum is rounded up to a whole point.
    """

    per_image: float | None = None
    per_1k_input_tokens: float | None = None
    per_1k_output_tokens: float | None = None

    @property
    def known(self) -> bool:
        return any(
            v is not None
            for v in (self.per_image, self.per_1k_input_tokens, self.per_1k_output_tokens)
        )

    def points(
        self, *, images: int, input_tokens: int | None, output_tokens: int | None
    ) -> int | None:
        """The cost of one answer, or None when no price is set or a priced count is missing."""
        if not self.known:
            return None
        total = 0.0
        if self.per_image is not None:
            total += self.per_image * images
        for price, tokens in (
            (self.per_1k_input_tokens, input_tokens),
            (self.per_1k_output_tokens, output_tokens),
        ):
            if price is None:
                continue
            if tokens is None:
                return None
            total += price * tokens / 1000
        return math.ceil(total - 1e-9)

    def as_json(self) -> dict[str, Any]:
        return {
            "per_image": self.per_image,
            "per_1k_input_tokens": self.per_1k_input_tokens,
            "per_1k_output_tokens": self.per_1k_output_tokens,
        }


@dataclass(frozen=True)
class PromptRule:
    """Whether an action takes a prompt, and how long it may be."""

    allowed: bool
    required: bool
    max_chars: int = 5000

    def as_json(self) -> dict[str, Any]:
        return {"allowed": self.allowed, "required": self.required, "max_chars": self.max_chars}


NO_PROMPT = PromptRule(allowed=False, required=False)
PROMPT_REQUIRED = PromptRule(allowed=True, required=True)
PROMPT_OPTIONAL = PromptRule(allowed=True, required=False)


@dataclass(frozen=True)
class ImageRule:
    """How many reference images an action takes and in which forms.

    ``allow_data_url`` admits ``data:image/...;base64,...`` URLs in ``images[].url``; the client
    sends those upstream as ``{type, size, w, h, b64}`` objects, shrunk to about 420 KB.
    """

    min_count: int = 0
    max_count: int = 0
    noun: str = "image"
    allow_data_url: bool = False
    max_data_url_bytes: int = 4 * 1024 * 1024

    def as_json(self) -> dict[str, Any]:
        return {
            "what": self.noun,
            "min": self.min_count,
            "max": self.max_count,
            "http_url": self.max_count > 0,
            "data_url": self.allow_data_url and self.max_count > 0,
        }


NO_IMAGES = ImageRule()


@dataclass(frozen=True)
class SourceRule:
    """A follow-up's link to an earlier job.

    ``from_actions`` lists the source actions whose output this action can work on (an upscale
    needs a split tile, a split needs a grid). ``replaces_images``: with a source, ``images`` must
    be empty because the source provides the picture.
    """

    required: bool
    needs_index: bool
    from_actions: frozenset[str]
    replaces_images: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "required": self.required,
            "index": {"min": 1, "max": 4} if self.needs_index else None,
            "from_actions": sorted(self.from_actions),
        }


@dataclass(frozen=True)
class ActionSpec:
    """One verb of one model: where it is sent, what it accepts and what it produces.

    ``default_params`` are sent upstream when a job leaves them out (FLUX ``mode``).
    ``result_fallback_path`` is polled once when ``result_path`` does not know a task (the
    Midjourney video result, whose path is not certain).
    """

    name: str
    submit_path: str
    result_path: str
    params_model: type[Params]
    prompt: PromptRule
    images: ImageRule
    source: SourceRule | None
    body: BodyShape
    result_field: ResultField
    produces: Produces
    expected_seconds: float
    price_points: int | None
    default_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    result_fallback_path: str | None = None
    usage_prices: UsagePrices = field(default_factory=UsagePrices)

    @property
    def sync(self) -> bool:
        """Whether one call is the whole task (the OpenAI-compatible host): no task id, no poll."""
        return self.body in SYNC_BODIES

    @property
    def needs_source(self) -> bool:
        return self.source is not None and self.source.required

    @property
    def needs_index(self) -> bool:
        return self.source is not None and self.source.needs_index

    def result_path_for(self, task_id: str) -> str:
        """The poll path for one upstream task id (the id is percent-encoded)."""
        return path_with_id(self.result_path, task_id)

    def params_json_schema(self) -> dict[str, Any]:
        return self.params_model.model_json_schema()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params_json_schema(),
            "prompt": self.prompt.as_json(),
            "images": self.images.as_json(),
            "source": self.source.as_json() if self.source else None,
            "result_field": self.result_field,
            "produces": self.produces,
            "expected_seconds": self.expected_seconds,
            "price_points": self.price_points,
            "default_params": dict(self.default_params),
            "synchronous": self.sync,
            "usage_prices": self.usage_prices.as_json() if self.sync else None,
        }


def path_with_id(path: str, task_id: str) -> str:
    """A result path with ``{id}`` replaced by the percent-encoded task id."""
    return path.replace("{id}", quote(task_id, safe=""))


@dataclass(frozen=True)
class ModelSpec:
    """One upstream model id and the actions it offers."""

    id: str
    provider: Provider
    family: Family
    title: str
    default_action: str
    actions: Mapping[str, ActionSpec]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "provider": self.provider,
            "family": self.family,
            "title": self.title,
            "default_action": self.default_action,
            "actions": [spec.as_json() for spec in self.actions.values()],
        }


@dataclass(frozen=True)
class ValidatedSpec:
    """A job spec the catalogue accepted, with defaults filled in, ready to store and submit.

    ``params`` is the validated params model dumped to JSON (unset optional keys left out,
    meaningful defaults such as FLUX ``mode`` included). ``images`` is ``[{"url": ...}]`` as given.
    """

    provider: Provider
    family: Family
    model: str
    action: str
    prompt: str | None
    params: dict[str, Any]
    images: list[dict[str, Any]]
    has_source: bool
    source_index: int | None
    result_field: ResultField
    produces: Produces
    expected_seconds: float
    price_points: int | None
