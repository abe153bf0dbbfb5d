"""The simulator's own table of MetaChat models, submit paths and result paths.

It deliberately duplicates what ``metachat`` knows: the simulator plays the upstream, so
when the two disagree, a test notices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from sim.params import (
    Choice,
    Flag,
    IntRange,
    NumberRange,
    OneOf,
    ParamRule,
    Ratio,
    Text,
    Words,
)


class Family(StrEnum):
    """Which result path answers for a task."""

    MIDJOURNEY = "midjourney"
    IMAGE = "image"
    VIDEO = "video"
    FLUX = "flux"  # the older FLUX.1 section's own paths (``legacy_flux_paths``)


class Body(StrEnum):
    """The shape of a submit body."""

    PROMPT = "prompt"  # {prompt, model, params, images}
    FOLLOW_UP = "follow_up"  # {id, index|type|scale|direction}
    DESCRIBE = "describe"  # {images: [{url}]}
    BLEND = "blend"  # {images: 2..5, model?, params?}
    FIRST_FRAME = "first_frame"  # {prompt?, model, params, images: exactly one {url}}


class Output(StrEnum):
    """What a succeeded task carries."""

    GRID = "grid"  # Midjourney 2x2 grid in ``image_url``
    SINGLE = "single"  # one Midjourney image in ``image_url``
    IMAGES = "images"  # ``image_urls`` list
    VIDEO = "video"  # ``video_url``
    PROMPTS = "prompts"  # describe: ``prompts`` list


MJ_IMAGINE_RULES: Mapping[str, ParamRule] = {
    "aspect": Ratio(),
    "stylize": IntRange(0, 1000),
    "quality": OneOf((0.25, 0.5, 1, 2, 4)),
    "chaos": IntRange(0, 100),
    "weird": IntRange(0, 3000),
    "style": Text(64),
    "seed": IntRange(0, 4_294_967_295),
    "no": Words(),
}
FLUX_ASPECTS = ("9:21", "2:3", "3:4", "9:16", "1:1", "16:9", "4:3", "3:2", "21:9")
COMMON_ASPECTS = ("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16")
VIDEO_RATIOS = ("adaptive", "16:9", "9:16", "4:3", "3:4", "1:1", "3:2", "2:3")

FLUX_RULES: Mapping[str, ParamRule] = {
    "mode": OneOf(("pro", "max")),
    "num": IntRange(1, 4),
    "aspect": OneOf(FLUX_ASPECTS),
    "size": OneOf(("1MP", "2MP", "4MP")),
    "seed": IntRange(0, 4_294_967_295),
}
Z_IMAGE_RULES: Mapping[str, ParamRule] = {
    "aspect": OneOf(COMMON_ASPECTS),
    "num": IntRange(1, 4),
    "size": OneOf(("1K", "2K")),
}
SEEDREAM_RULES: Mapping[str, ParamRule] = {"num": IntRange(1, 4), "size": OneOf(("1K", "2K", "4K"))}
GROK_IMAGE_RULES: Mapping[str, ParamRule] = {"num": IntRange(1, 4), "aspect": Ratio()}
GROK_VIDEO_RULES: Mapping[str, ParamRule] = {
    "duration": IntRange(1, 15),
    "ratio": OneOf(VIDEO_RATIOS),
    "resolution": OneOf(("480p", "720p")),
}
MJ_VIDEO_RULES: Mapping[str, ParamRule] = {
    "resolution": OneOf(("480p", "720p")),
    "motion": OneOf(("low", "high")),
    "loop": Flag(),
    "batch_size": Choice((1, 2, 4)),
}
BLEND_RULES: Mapping[str, ParamRule] = {"aspect": OneOf(("1:1", "2:3", "3:2"))}


@dataclass(frozen=True)
class ModelSpec:
    """One upstream model: which duration class it runs in and which ``params`` it takes."""

    id: str
    duration_class: str
    rules: Mapping[str, ParamRule] = field(default_factory=dict)


MJ_MODELS = ("mj-v82", "mj-v81", "mj-v7", "mj-v61", "niji-7", "niji-6")
FLUX_MODELS = ("flux-kontext", "flux-2-pro", "flux-2-max")
IMAGE_MODELS = (
    "flux-kontext",
    "flux-2-pro",
    "flux-2-max",
    "z-image-turbo",
    "doubao-seedream-5-0-pro-260628",
    "doubao-seedream-5-0-260128",
    "doubao-seedream-4-5-251128",
    "grok-imagine-image-2.0",
    "grok-imagine-image-quality",
)
GROK_VIDEO_MODELS = ("grok-imagine-video-1.5-preview",)
MJ_VIDEO_MODELS = ("mj-video-v1",)


def _image_model(model_id: str) -> ModelSpec:
    if model_id.startswith("flux"):
        return ModelSpec(model_id, "flux", FLUX_RULES)
    if model_id.startswith("z-image"):
        return ModelSpec(model_id, "z-image", Z_IMAGE_RULES)
    if model_id.startswith("doubao-seedream"):
        return ModelSpec(model_id, "seedream", SEEDREAM_RULES)
    return ModelSpec(model_id, "grok-image", GROK_IMAGE_RULES)


MODELS: Mapping[str, ModelSpec] = {
    **{m: ModelSpec(m, "mj-imagine", MJ_IMAGINE_RULES) for m in MJ_MODELS},
    **{m: _image_model(m) for m in IMAGE_MODELS},
    **{m: ModelSpec(m, "grok-video", GROK_VIDEO_RULES) for m in GROK_VIDEO_MODELS},
    **{m: ModelSpec(m, "mj-video", MJ_VIDEO_RULES) for m in MJ_VIDEO_MODELS},
}


@dataclass(frozen=True)
class FollowUpArg:
    """The one extra field a Midjourney follow-up carries besides ``id``."""

    name: str
    rule: ParamRule


@dataclass(frozen=True)
class SubmitRoute:
    """One submit path: how its body looks, what it makes, and where it is polled."""

    path: str
    action: str
    family: Family
    body: Body
    output: Output
    models: tuple[str, ...] = ()
    model_required: bool = True
    duration_class: str | None = None  # None: the model's own class
    arg: FollowUpArg | None = None
    needs_source: Output | None = None  # follow-ups: what the source task must have made


def _follow_up(
    action: str, output: Output, source: Output, arg: FollowUpArg | None = None
) -> SubmitRoute:
    return SubmitRoute(
        path=f"midjourney/{action}",
        action=action,
        family=Family.MIDJOURNEY,
        body=Body.FOLLOW_UP,
        output=output,
        duration_class="mj-transform",
        arg=arg,
        needs_source=source,
    )


SUBMIT_ROUTES: Mapping[str, SubmitRoute] = {
    r.path: r
    for r in (
        SubmitRoute(
            "midjourney/imagine", "imagine", Family.MIDJOURNEY, Body.PROMPT, Output.GRID, MJ_MODELS
        ),
        _follow_up("separate", Output.SINGLE, Output.GRID, FollowUpArg("index", IntRange(1, 4))),
        _follow_up(
            "upscale",
            Output.SINGLE,
            Output.SINGLE,
            FollowUpArg("type", OneOf(("subtle", "creative"))),
        ),
        _follow_up("variation", Output.GRID, Output.GRID, FollowUpArg("index", IntRange(1, 4))),
        _follow_up("reroll", Output.GRID, Output.GRID),
        _follow_up(
            "vary", Output.GRID, Output.SINGLE, FollowUpArg("type", OneOf(("strong", "subtle")))
        ),
        _follow_up("zoom", Output.GRID, Output.SINGLE, FollowUpArg("scale", NumberRange(1.0, 2.0))),
        _follow_up(
            "pan",
            Output.GRID,
            Output.SINGLE,
            FollowUpArg("direction", OneOf(("left", "right", "up", "down"))),
        ),
        SubmitRoute(
            "midjourney/describe",
            "describe",
            Family.MIDJOURNEY,
            Body.DESCRIBE,
            Output.PROMPTS,
            MJ_MODELS,
            model_required=False,
            duration_class="mj-describe",
        ),
        SubmitRoute(
            "midjourney/blend",
            "blend",
            Family.MIDJOURNEY,
            Body.BLEND,
            Output.GRID,
            MJ_MODELS,
            model_required=False,
            duration_class="mj-imagine",
        ),
        SubmitRoute(
            "midjourney/video",
            "video",
            Family.MIDJOURNEY,
            Body.FIRST_FRAME,
            Output.VIDEO,
            MJ_VIDEO_MODELS,
        ),
        SubmitRoute(
            "image/generate", "generate", Family.IMAGE, Body.PROMPT, Output.IMAGES, IMAGE_MODELS
        ),
        SubmitRoute(
            "flux/generate", "generate", Family.FLUX, Body.PROMPT, Output.IMAGES, FLUX_MODELS
        ),
        SubmitRoute(
            "video/generate",
            "generate",
            Family.VIDEO,
            Body.FIRST_FRAME,
            Output.VIDEO,
            GROK_VIDEO_MODELS,
        ),
    )
}

DEFAULT_BLEND_MODEL = "mj-v7"

#: Median seconds per duration class before ``time_scale``.
DEFAULT_DURATIONS: Mapping[str, float] = {
    "z-image": 6.0,
    "flux": 12.0,
    "seedream": 15.0,
    "grok-image": 10.0,
    "mj-imagine": 40.0,
    "mj-transform": 25.0,
    "mj-describe": 8.0,
    "mj-video": 150.0,
    "grok-video": 100.0,
}

#: Illustrative prices (元点). Image models are per picture, Grok video per 5 s, MJ per task.
DEFAULT_MODEL_POINTS: Mapping[str, int] = {
    "mj-v82": 50,
    "mj-v81": 45,
    "mj-v7": 40,
    "mj-v61": 30,
    "niji-7": 40,
    "niji-6": 30,
    "flux-kontext": 24,
    "flux-2-pro": 30,
    "flux-2-max": 60,
    "z-image-turbo": 8,
    "doubao-seedream-5-0-pro-260628": 40,
    "doubao-seedream-5-0-260128": 30,
    "doubao-seedream-4-5-251128": 25,
    "grok-imagine-image-2.0": 20,
    "grok-imagine-image-quality": 40,
    "grok-imagine-video-1.5-preview": 1775,
    "mj-video-v1": 600,
}

#: Midjourney actions priced on their own rather than by the source's model.
DEFAULT_ACTION_POINTS: Mapping[str, int] = {
    "separate": 2,
    "upscale": 20,
    "variation": 30,
    "reroll": 30,
    "vary": 30,
    "zoom": 30,
    "pan": 30,
    "describe": 10,
}

RESULT_FAMILIES: Mapping[str, Family] = {
    "midjourney/result": Family.MIDJOURNEY,
    "image/result": Family.IMAGE,
    "video/result": Family.VIDEO,
    "flux/result": Family.FLUX,
}

LEGACY_FLUX_PATHS = frozenset({"flux/generate", "flux/result"})
"""Paths that exist only with ``legacy_flux_paths``; otherwise they answer 404."""
