"""The default catalogue as data: endpoints, action templates and the models that use them.

Sources and confidence for every value are in ``docs/upstream.md``. Paths, durations and prices
that no source confirms can be replaced through `CatalogueOverrides`; nothing here is a branch in
code, so adding a model is adding a row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from metachat import params as p
from metachat.specs import (
    NO_IMAGES,
    NO_PROMPT,
    PROMPT_OPTIONAL,
    PROMPT_REQUIRED,
    BodyShape,
    Family,
    ImageRule,
    Produces,
    PromptRule,
    Provider,
    ResultField,
    SourceRule,
)

DEFAULT_PATHS: dict[str, str] = {
    "midjourney.imagine": "midjourney/imagine",
    "midjourney.split": "midjourney/separate",
    "midjourney.upscale": "midjourney/upscale",
    "midjourney.variation": "midjourney/variation",
    "midjourney.reroll": "midjourney/reroll",
    "midjourney.vary": "midjourney/vary",
    "midjourney.zoom": "midjourney/zoom",
    "midjourney.pan": "midjourney/pan",
    "midjourney.describe": "midjourney/describe",
    "midjourney.blend": "midjourney/blend",
    "midjourney.video": "midjourney/video",
    "midjourney.result": "midjourney/result/{id}",
    # The docs list a separate "video result" page; the video family's query path is our guess
    # at it, with the Midjourney result path (where a live client polls clips) as the fallback.
    "midjourney.video_result": "video/result/{id}",
    "image.generate": "image/generate",
    "image.result": "image/result/{id}",
    "video.generate": "video/generate",
    "video.result": "video/result/{id}",
    "account.balance": "account/balance",
    "account.usage": "account/usage",
    # The OpenAI-compatible host (METACHAT_LLM_BASE_URL): OpenAI's own paths for GPT Image and
    # chat (documented host; the standard paths our assumption), and the same images paths for
    # Gemini image and Imagen, which the docs list without showing where they are served.
    "gpt-image.generate": "images/generations",
    "gpt-image.edit": "images/edits",
    "google-image.generate": "images/generations",
    "google-image.edit": "images/edits",
    "chat.completions": "chat/completions",
    "llm.models": "models",
}
"""Endpoint key → path relative to the base URL (the ``gpt-image.*``, ``google-image.*``,
``chat.*`` and ``llm.*`` keys: relative to the OpenAI-compatible base URL). Result paths carry
one ``{id}``."""

_LLM_PREFIXES = ("gpt-image", "google-image", "chat", "llm")
LLM_ENDPOINTS = frozenset(key for key in DEFAULT_PATHS if key.split(".")[0] in _LLM_PREFIXES)

RESULT_ENDPOINTS = frozenset(key for key, path in DEFAULT_PATHS.items() if "{id}" in path)


@dataclass(frozen=True)
class ActionTemplate:
    """An action before overrides: endpoints are keys into `DEFAULT_PATHS`."""

    name: str
    endpoint: str
    result_endpoint: str | None
    params_model: type[p.Params]
    prompt: PromptRule
    images: ImageRule
    source: SourceRule | None
    body: BodyShape
    result_field: ResultField
    produces: Produces
    expected_seconds: float
    result_fallback_endpoint: str | None = None


@dataclass(frozen=True)
class ModelTemplate:
    """A model before overrides; its first action is the default one.

    ``default_params`` are sent with every submit of the model that does not set them.
    """

    id: str
    provider: Provider
    family: Family
    title: str
    actions: tuple[ActionTemplate, ...]
    default_params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


# Midjourney outputs: a grid can be split or varied by tile; a single image can be upscaled,
# varied, zoomed or panned.
GRID_ACTIONS = frozenset({"imagine", "variation", "reroll", "vary", "zoom", "pan", "blend"})
SINGLE_IMAGE_ACTIONS = frozenset({"split", "upscale"})

_MJ_REFERENCES = ImageRule(max_count=5, noun="reference image", allow_data_url=True)
_FIRST_FRAME = ImageRule(min_count=1, max_count=1, noun="first-frame image")


def _mj_follow_up(
    name: str,
    params_model: type[p.Params],
    *,
    needs_index: bool,
    from_actions: frozenset[str],
    produces: Produces,
    seconds: float = 30.0,
) -> ActionTemplate:
    return ActionTemplate(
        name=name,
        endpoint=f"midjourney.{name}",
        result_endpoint="midjourney.result",
        params_model=params_model,
        prompt=NO_PROMPT,
        images=NO_IMAGES,
        source=SourceRule(required=True, needs_index=needs_index, from_actions=from_actions),
        body="follow_up",
        result_field="image_url",
        produces=produces,
        expected_seconds=seconds,
    )


MIDJOURNEY_ACTIONS: tuple[ActionTemplate, ...] = (
    ActionTemplate(
        name="imagine",
        endpoint="midjourney.imagine",
        result_endpoint="midjourney.result",
        params_model=p.MidjourneyImagineParams,
        prompt=PROMPT_REQUIRED,
        images=_MJ_REFERENCES,
        source=None,
        body="generate",
        result_field="image_url",
        produces="grid",
        expected_seconds=45.0,
    ),
    _mj_follow_up(
        "split", p.NoParams, needs_index=True, from_actions=GRID_ACTIONS, produces="image"
    ),
    _mj_follow_up(
        "upscale",
        p.MidjourneyUpscaleParams,
        needs_index=False,
        from_actions=frozenset({"split"}),
        produces="image",
        seconds=40.0,
    ),
    _mj_follow_up(
        "variation", p.NoParams, needs_index=True, from_actions=GRID_ACTIONS, produces="grid"
    ),
    _mj_follow_up(
        "reroll", p.NoParams, needs_index=False, from_actions=GRID_ACTIONS, produces="grid"
    ),
    _mj_follow_up(
        "vary",
        p.MidjourneyVaryParams,
        needs_index=False,
        from_actions=SINGLE_IMAGE_ACTIONS,
        produces="grid",
    ),
    _mj_follow_up(
        "zoom",
        p.MidjourneyZoomParams,
        needs_index=False,
        from_actions=SINGLE_IMAGE_ACTIONS,
        produces="grid",
    ),
    _mj_follow_up(
        "pan",
        p.MidjourneyPanParams,
        needs_index=False,
        from_actions=SINGLE_IMAGE_ACTIONS,
        produces="grid",
    ),
    ActionTemplate(
        name="describe",
        endpoint="midjourney.describe",
        result_endpoint="midjourney.result",
        params_model=p.NoParams,
        prompt=NO_PROMPT,
        images=ImageRule(min_count=1, max_count=1, noun="image to describe"),
        source=None,
        body="generate",
        result_field="prompts",
        produces="prompts",
        expected_seconds=10.0,
    ),
    ActionTemplate(
        name="blend",
        endpoint="midjourney.blend",
        result_endpoint="midjourney.result",
        params_model=p.MidjourneyBlendParams,
        prompt=NO_PROMPT,
        images=ImageRule(min_count=2, max_count=5, noun="image to blend"),
        source=None,
        body="generate",
        result_field="image_url",
        produces="grid",
        expected_seconds=45.0,
    ),
)

MIDJOURNEY_VIDEO = ActionTemplate(
    name="video",
    endpoint="midjourney.video",
    result_endpoint="midjourney.video_result",
    result_fallback_endpoint="midjourney.result",
    params_model=p.MidjourneyVideoParams,
    prompt=PROMPT_OPTIONAL,
    images=_FIRST_FRAME,
    # Only a first-frame URL is confirmed; for a video of one tile, split first and pass the
    # split's image URL (no source confirms a "video from grid id + index" body).
    source=None,
    body="generate",
    result_field="video_url",
    produces="video",
    expected_seconds=180.0,
)


def _image_generate(
    params_model: type[p.Params], images: ImageRule, seconds: float
) -> tuple[ActionTemplate, ...]:
    return (
        ActionTemplate(
            name="generate",
            endpoint="image.generate",
            result_endpoint="image.result",
            params_model=params_model,
            prompt=PROMPT_REQUIRED,
            images=images,
            source=None,
            body="generate",
            result_field="image_urls",
            produces="images",
            expected_seconds=seconds,
        ),
    )


_FLUX_REFERENCES = ImageRule(max_count=3, noun="reference image", allow_data_url=True)
_FLUX = _image_generate(p.FluxParams, _FLUX_REFERENCES, 15.0)
_Z_IMAGE = _image_generate(p.ZImageParams, NO_IMAGES, 8.0)
_SEEDREAM = _image_generate(p.SeedreamParams, NO_IMAGES, 20.0)
_GROK_IMAGE = _image_generate(p.GrokImageParams, NO_IMAGES, 15.0)

_GROK_VIDEO = (
    ActionTemplate(
        name="generate",
        endpoint="video.generate",
        result_endpoint="video.result",
        params_model=p.GrokVideoParams,
        prompt=PROMPT_OPTIONAL,
        images=_FIRST_FRAME,
        source=None,
        body="generate",
        result_field="video_url",
        produces="video",
        expected_seconds=120.0,
    ),
)


# --- the OpenAI-compatible host: one synchronous call per job ---------------------------------

_EDIT_REFERENCES = ImageRule(min_count=1, max_count=16, noun="image to edit", allow_data_url=True)


def _sync(
    name: str,
    endpoint: str,
    params_model: type[p.Params],
    *,
    body: BodyShape,
    prompt: PromptRule = PROMPT_REQUIRED,
    images: ImageRule = NO_IMAGES,
    seconds: float,
) -> ActionTemplate:
    return ActionTemplate(
        name=name,
        endpoint=endpoint,
        result_endpoint=None,
        params_model=params_model,
        prompt=prompt,
        images=images,
        source=None,
        body=body,
        result_field="message" if body == "openai_chat" else "b64_json",
        produces="text" if body == "openai_chat" else "images",
        expected_seconds=seconds,
    )


_GPT_IMAGE = (
    _sync("generate", "gpt-image.generate", p.GptImageParams, body="openai_images", seconds=40.0),
    _sync(
        "edit",
        "gpt-image.edit",
        p.GptImageParams,
        body="openai_edits",
        images=_EDIT_REFERENCES,
        seconds=50.0,
    ),
)
_GEMINI_IMAGE = (
    _sync(
        "generate", "google-image.generate", p.GoogleImageParams, body="openai_images", seconds=20.0
    ),
    _sync(
        "edit",
        "google-image.edit",
        p.GoogleImageParams,
        body="openai_edits",
        images=ImageRule(min_count=1, max_count=3, noun="image to edit", allow_data_url=True),
        seconds=25.0,
    ),
)
_B64 = MappingProxyType({"response_format": "b64_json"})
_IMAGEN = (
    _sync(
        "generate", "google-image.generate", p.GoogleImageParams, body="openai_images", seconds=15.0
    ),
)
CHAT_ACTIONS = (
    _sync(
        "chat",
        "chat.completions",
        p.ChatParams,
        body="openai_chat",
        prompt=PromptRule(allowed=True, required=False, max_chars=200_000),
        seconds=10.0,
    ),
)

CHAT_MODELS: tuple[tuple[str, str], ...] = (
    ("gpt-5", "GPT-5"),
    ("gpt-4.1", "GPT-4.1"),
    ("gpt-4o-mini", "GPT-4o mini"),
    ("claude-sonnet-4-5", "Claude Sonnet 4.5"),
    ("gemini-2.5-pro", "Gemini 2.5 Pro"),
    ("gemini-2.5-flash", "Gemini 2.5 Flash"),
    ("deepseek-chat", "DeepSeek V3"),
    ("grok-4", "Grok 4"),
    ("qwen3-max", "Qwen3 Max"),
    ("kimi-k2", "Kimi K2"),
    ("glm-4.6", "GLM-4.6"),
)
"""Chat model ids, one or two per vendor (our assumption: the docs list eight vendors' chat
without ids we could read). More are added with the ``chat_models`` override."""


def chat_model(model_id: str, title: str | None = None) -> ModelTemplate:
    """A chat model on ``chat/completions`` (also how ``chat_models`` overrides are added)."""
    return ModelTemplate(model_id, "chat", "openai-chat", title or model_id, CHAT_ACTIONS)


def _mj(model_id: str, title: str) -> ModelTemplate:
    return ModelTemplate(model_id, "midjourney", "midjourney", title, MIDJOURNEY_ACTIONS)


MODELS: tuple[ModelTemplate, ...] = (
    _mj("mj-v82", "Midjourney V8.2"),
    _mj("mj-v81", "Midjourney V8.1"),
    _mj("mj-v7", "Midjourney V7"),
    _mj("mj-v61", "Midjourney V6.1"),
    _mj("niji-7", "Niji 7"),
    _mj("niji-6", "Niji 6"),
    ModelTemplate(
        "mj-video-v1", "midjourney", "midjourney", "Midjourney video", (MIDJOURNEY_VIDEO,)
    ),
    # Kontext always gets a mode (a client saw the upstream fail on a null one); FLUX.2 gets none
    # unless the job or an override sets one (the newest client never sends it).
    ModelTemplate(
        "flux-kontext",
        "flux",
        "image",
        "FLUX.1 Kontext",
        _FLUX,
        default_params=MappingProxyType({"mode": "pro"}),
    ),
    ModelTemplate("flux-2-pro", "flux", "image", "FLUX.2 pro", _FLUX),
    ModelTemplate("flux-2-max", "flux", "image", "FLUX.2 max", _FLUX),
    ModelTemplate("z-image-turbo", "z-image", "image", "Z-Image turbo", _Z_IMAGE),
    ModelTemplate(
        "doubao-seedream-5-0-pro-260628", "seedream", "image", "Seedream 5.0 pro", _SEEDREAM
    ),
    ModelTemplate("doubao-seedream-5-0-260128", "seedream", "image", "Seedream 5.0", _SEEDREAM),
    ModelTemplate("doubao-seedream-4-5-251128", "seedream", "image", "Seedream 4.5", _SEEDREAM),
    ModelTemplate("grok-imagine-image-2.0", "grok", "image", "Grok Imagine image 2.0", _GROK_IMAGE),
    ModelTemplate(
        "grok-imagine-image-quality", "grok", "image", "Grok Imagine image quality", _GROK_IMAGE
    ),
    ModelTemplate(
        "grok-imagine-video-1.5-preview", "grok", "video", "Grok Imagine video 1.5", _GROK_VIDEO
    ),
    # documented in MetaChat's model list for the OpenAI-compatible host
    ModelTemplate("gpt-image-1.5", "gpt-image", "openai-image", "GPT Image 1.5", _GPT_IMAGE),
    ModelTemplate("gpt-image-1", "gpt-image", "openai-image", "GPT Image 1", _GPT_IMAGE),
    # listed in the docs' index; ids our assumption (Google's public ids)
    ModelTemplate(
        "gemini-2.5-flash-image",
        "google-image",
        "openai-image",
        "Gemini 2.5 Flash Image",
        _GEMINI_IMAGE,
        default_params=_B64,
    ),
    ModelTemplate(
        "gemini-3-pro-image-preview",
        "google-image",
        "openai-image",
        "Gemini 3 Pro Image",
        _GEMINI_IMAGE,
        default_params=_B64,
    ),
    ModelTemplate(
        "imagen-4.0-generate-001",
        "google-image",
        "openai-image",
        "Imagen 4",
        _IMAGEN,
        default_params=_B64,
    ),
    ModelTemplate(
        "imagen-4.0-ultra-generate-001",
        "google-image",
        "openai-image",
        "Imagen 4 Ultra",
        _IMAGEN,
        default_params=_B64,
    ),
    *(chat_model(model_id, title) for model_id, title in CHAT_MODELS),
)
