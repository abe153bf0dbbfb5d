"""Per-model ``params`` models: what each MetaChat model accepts, as pydantic v2 schemas.

Every model forbids unknown keys so a typo answers 422 instead of being silently dropped upstream.
Ranges and enums come from public client code where known; the rest are our assumptions and are
listed in ``docs/upstream.md``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

ASPECT_PATTERN = r"^[1-9][0-9]{0,2}:[1-9][0-9]{0,2}$"  # whole numbers, as Midjourney's --ar
_ASPECT = re.compile(ASPECT_PATTERN)


def _aspect_ratio(value: str) -> str:
    if not _ASPECT.match(value):
        raise PydanticCustomError("aspect_ratio", 'must be a width:height ratio such as "16:9"')
    return value


AspectRatio = Annotated[
    str,
    AfterValidator(_aspect_ratio),
    Field(
        description='Width:height ratio such as "16:9".',
        examples=["16:9"],
        json_schema_extra={"pattern": ASPECT_PATTERN},
    ),
]
"""A free ``W:H`` ratio, for models whose allowed list is not known."""

FluxAspect = Literal["9:21", "2:3", "3:4", "9:16", "1:1", "16:9", "4:3", "3:2", "21:9"]
FluxSize = Literal["1MP", "2MP", "4MP"]
FluxMode = Literal["pro", "max"]
ZImageAspect = Literal["1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16"]
ImageCount = Annotated[int, Field(ge=1, le=4, description="How many images to generate.")]

MIDJOURNEY_QUALITIES = (0.5, 1, 2, 4)


def _one_word(value: str) -> str:
    if any(ch.isspace() for ch in value):
        raise PydanticCustomError("one_word", "must be one keyword without spaces")
    return value


def _midjourney_quality(value: float) -> float:
    if value not in MIDJOURNEY_QUALITIES:
        raise PydanticCustomError("quality", "must be 0.5, 1, 2 or 4")
    return value


MidjourneyQuality = Annotated[
    float,
    AfterValidator(_midjourney_quality),
    Field(json_schema_extra={"enum": list(MIDJOURNEY_QUALITIES)}),
]


MIDJOURNEY_VIDEO_BATCHES = (1, 2, 4)


def _video_batch_size(value: int) -> int:
    if value not in MIDJOURNEY_VIDEO_BATCHES:
        raise PydanticCustomError("batch_size", "must be 1, 2 or 4")
    return value


# An int enum by hand: a Literal of ints would take true for 1 and 2.0 for 2.
VideoBatchSize = Annotated[
    int,
    AfterValidator(_video_batch_size),
    Field(
        description="How many clips one task makes.",
        json_schema_extra={"enum": list(MIDJOURNEY_VIDEO_BATCHES)},
    ),
]


class Params(BaseModel):
    """Base of every params model: unknown keys refused, JSON types as sent (no "5" → 5)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class NoParams(Params):
    """An action that takes no parameters at all."""


class MidjourneyImagineParams(Params):
    """Midjourney ``imagine`` / grid generation knobs."""

    aspect: AspectRatio | None = None
    stylize: Annotated[int, Field(ge=0, le=1000)] | None = None
    quality: MidjourneyQuality | None = None
    chaos: Annotated[int, Field(ge=0, le=100)] | None = None
    style: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    seed: Annotated[int, Field(ge=0, le=4_294_967_295)] | None = None
    no: (
        Annotated[
            list[
                Annotated[
                    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_one_word)
                ]
            ],
            Field(max_length=32, description="Keywords to exclude; no spaces inside one."),
        ]
        | None
    ) = None


class MidjourneyUpscaleParams(Params):
    """Upscale of a split tile."""

    type: Literal["subtle", "creative"] = "subtle"


class MidjourneyVaryParams(Params):
    """Strong or subtle variation of a single image."""

    type: Literal["strong", "subtle"] = "subtle"


class MidjourneyZoomParams(Params):
    """Zoom out of a single image; the scale range is our assumption (Midjourney's own UI)."""

    scale: Annotated[float, Field(gt=1.0, le=2.0)] = 2.0


class MidjourneyPanParams(Params):
    """Extend a single image in one direction."""

    direction: Literal["left", "right", "up", "down"]


class MidjourneyBlendParams(Params):
    """Blend of 2..5 images; the aspect list is Midjourney's own (portrait, square, landscape)."""

    aspect: Literal["2:3", "1:1", "3:2"] | None = None


class MidjourneyVideoParams(Params):
    """Midjourney image-to-video; clips have a fixed length, so there is no duration.

    ``motion``, ``loop`` and ``batch_size`` are Midjourney's own video knobs (low/high motion, a
    clip that ends on its first frame, 1, 2 or 4 clips per task); their names on MetaChat's wire
    are our assumption. With a ``batch_size`` above 1 the task yields that many clips.
    """

    resolution: Literal["480p", "720p"] | None = None
    motion: Literal["low", "high"] | None = None
    loop: bool | None = None
    batch_size: VideoBatchSize | None = None


class FluxParams(Params):
    """FLUX.1 Kontext and FLUX.2 pro / max.

    ``mode`` (pro/max): one public client always sends it because the upstream errored when it
    was null, another never does. A job may set it; when it does not, the catalogue's
    per-model ``default_params`` decide whether one is sent (``mcjobs upstream check`` shows
    which the upstream wants).
    """

    mode: FluxMode | None = None
    num: ImageCount | None = None
    aspect: FluxAspect | None = None
    size: FluxSize | None = None


class ZImageParams(Params):
    """Z-Image turbo: an aspect ratio and a pixel-size preset."""

    aspect: ZImageAspect | None = None
    size: Literal["1K", "2K"] | None = None


class SeedreamParams(Params):
    """Doubao Seedream: a count and a pixel-size preset; no aspect ratio."""

    num: ImageCount | None = None
    size: Literal["1K", "2K", "4K"] | None = None


class GrokImageParams(Params):
    """Grok Imagine image models."""

    num: ImageCount | None = None
    aspect: AspectRatio | None = None


class GrokVideoParams(Params):
    """Grok Imagine video."""

    duration: Annotated[int, Field(ge=1, le=15, description="Clip length in seconds.")] = 5
    ratio: Literal["adaptive", "16:9", "9:16", "4:3", "3:4", "1:1", "3:2", "2:3"] | None = None
    resolution: Literal["480p", "720p"] | None = None


# --- the OpenAI-compatible host ---------------------------------------------------------------

OPENAI_SIZE_PATTERN = r"^(auto|[1-9][0-9]{1,4}x[1-9][0-9]{1,4})$"


class GptImageParams(Params):
    """``gpt-image-1.5`` / ``gpt-image-1`` on ``images/generations`` and ``images/edits``: the
    OpenAI Images API knobs (MetaChat relays them unchanged, our assumption)."""

    size: Literal["auto", "1024x1024", "1536x1024", "1024x1536"] | None = None
    quality: Literal["auto", "low", "medium", "high"] | None = None
    background: Literal["auto", "transparent", "opaque"] | None = None
    n: Annotated[int, Field(ge=1, le=10, description="How many images to generate.")] | None = None
    output_format: Literal["png", "jpeg", "webp"] | None = None
    output_compression: Annotated[int, Field(ge=0, le=100)] | None = None


class GoogleImageParams(Params):
    """Gemini image and Imagen models on the OpenAI-compatible images paths (the size strings
    and the 1-4 count are our assumption)."""

    n: ImageCount | None = None
    # sent by default (catalogue default_params): OpenAI's images API answers with URLs unless
    # asked for base64, which is what the service stores
    response_format: Literal["b64_json"] | None = None
    size: (
        Annotated[
            str,
            StringConstraints(pattern=OPENAI_SIZE_PATTERN),
            Field(description='"auto" or WIDTHxHEIGHT such as "1024x1024".'),
        ]
        | None
    ) = None


class ChatMessage(Params):
    """One chat message: a role and its text (or OpenAI content parts, passed through)."""

    role: Literal["system", "developer", "user", "assistant"]
    content: (
        Annotated[str, StringConstraints(max_length=200_000)]
        | Annotated[list[dict[str, object]], Field(min_length=1, max_length=64)]
    )


class ChatParams(Params):
    """Chat completions: the conversation and the usual sampling knobs. A job's ``prompt``, when
    given, is sent as a last user message after ``messages``."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = None
    stop: (
        Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=64)]],
            Field(max_length=4),
        ]
        | None
    ) = None
