"""The catalogue: which models exist, what a job spec may say, and what overrides change."""

from __future__ import annotations

import json
from typing import Any

import jsonschema_rs
import pytest

from metachat import (
    PROVIDERS,
    CatalogueOverrides,
    SpecError,
    UnknownAction,
    UnknownModel,
    build_catalogue,
)

CATALOGUE = build_catalogue()
MJ_MODELS = ["mj-v82", "mj-v81", "mj-v7", "mj-v61", "niji-7", "niji-6"]
IMAGE_MODELS = {
    "flux-kontext": "flux",
    "flux-2-pro": "flux",
    "flux-2-max": "flux",
    "z-image-turbo": "z-image",
    "doubao-seedream-5-0-pro-260628": "seedream",
    "doubao-seedream-5-0-260128": "seedream",
    "doubao-seedream-4-5-251128": "seedream",
    "grok-imagine-image-2.0": "grok",
    "grok-imagine-image-quality": "grok",
}
GROK_VIDEO = "grok-imagine-video-1.5-preview"
OPENAI_HOST_MODELS = {
    "gpt-image-1.5": "gpt-image",
    "gpt-image-1": "gpt-image",
    "gemini-2.5-flash-image": "google-image",
    "gemini-3-pro-image-preview": "google-image",
    "imagen-4.0-generate-001": "google-image",
    "imagen-4.0-ultra-generate-001": "google-image",
    **dict.fromkeys(
        [
            "gpt-5",
            "gpt-4.1",
            "gpt-4o-mini",
            "claude-sonnet-4-5",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "deepseek-chat",
            "grok-4",
            "qwen3-max",
            "kimi-k2",
            "glm-4.6",
        ],
        "chat",
    ),
}
PNG_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def spec(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "mj-v7",
        "action": None,
        "prompt": "a lighthouse at dawn",
        "params": {},
        "images": [],
        "has_source": False,
        "source_index": None,
    }
    return {**base, **fields}


def follow_up(action: str, index: int | None = None, **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"prompt": None, "has_source": True, "source_index": index}
    return spec(**{"action": action, **defaults, **fields})


def test_every_upstream_model_id_is_listed_with_its_provider() -> None:
    listed = {model.id: model.provider for model in CATALOGUE.models}
    expected = {
        **dict.fromkeys(MJ_MODELS, "midjourney"),
        "mj-video-v1": "midjourney",
        **IMAGE_MODELS,
        GROK_VIDEO: "grok",
        **OPENAI_HOST_MODELS,
    }
    assert listed == expected
    assert set(listed.values()) == set(PROVIDERS)


@pytest.mark.parametrize(
    ("model", "default_action", "submit_path", "result_path", "result_field"),
    [
        ("mj-v7", "imagine", "midjourney/imagine", "midjourney/result/{id}", "image_url"),
        ("niji-6", "imagine", "midjourney/imagine", "midjourney/result/{id}", "image_url"),
        ("mj-video-v1", "video", "midjourney/video", "video/result/{id}", "video_url"),
        ("flux-kontext", "generate", "image/generate", "image/result/{id}", "image_urls"),
        ("z-image-turbo", "generate", "image/generate", "image/result/{id}", "image_urls"),
        (GROK_VIDEO, "generate", "video/generate", "video/result/{id}", "video_url"),
    ],
    ids=["mj", "niji", "mj-video", "flux", "z-image", "grok-video"],
)
def test_default_action_says_where_a_job_goes_and_where_its_output_is(
    model: str, default_action: str, submit_path: str, result_path: str, result_field: str
) -> None:
    action = CATALOGUE.action(model)
    assert action.name == default_action
    assert (action.submit_path, action.result_path) == (submit_path, result_path)
    assert action.result_field == result_field


@pytest.mark.parametrize(
    ("action", "path", "needs_source", "needs_index"),
    [
        ("split", "midjourney/separate", True, True),
        ("upscale", "midjourney/upscale", True, False),
        ("variation", "midjourney/variation", True, True),
        ("reroll", "midjourney/reroll", True, False),
        ("vary", "midjourney/vary", True, False),
        ("zoom", "midjourney/zoom", True, False),
        ("pan", "midjourney/pan", True, False),
        ("describe", "midjourney/describe", False, False),
        ("blend", "midjourney/blend", False, False),
    ],
    ids=lambda v: str(v),
)
def test_midjourney_actions_know_their_path_and_source_needs(
    action: str, path: str, needs_source: bool, needs_index: bool
) -> None:
    spec_ = CATALOGUE.action("mj-v61", action)
    assert spec_.submit_path == path
    assert (spec_.needs_source, spec_.needs_index) == (needs_source, needs_index)


def test_unknown_model_points_at_the_model_field_and_lists_known_ids() -> None:
    with pytest.raises(UnknownModel) as caught:
        CATALOGUE.validate(**spec(model="dall-e-3"))
    assert caught.value.errors[0][0] == ("model",)
    assert "mj-v7" in caught.value.errors[0][1]


def test_unknown_action_points_at_the_action_field() -> None:
    with pytest.raises(UnknownAction) as caught:
        CATALOGUE.validate(**spec(model="flux-kontext", action="upscale"))
    assert [loc for loc, _ in caught.value.errors] == [("action",)]


REFUSED = [
    ("unknown-param-key", spec(params={"aspekt": "16:9"}), [("params", "aspekt")]),
    ("stylize-above-1000", spec(params={"stylize": 1001}), [("params", "stylize")]),
    ("chaos-negative", spec(params={"chaos": -1}), [("params", "chaos")]),
    ("quality-not-in-set", spec(params={"quality": 3}), [("params", "quality")]),
    ("aspect-not-w-h", spec(params={"aspect": "wide"}), [("params", "aspect")]),
    ("no-keyword-with-space", spec(params={"no": ["red car"]}), [("params", "no", 0)]),
    ("num-as-string", spec(model="flux-2-pro", params={"num": "2"}), [("params", "num")]),
    ("num-above-4", spec(model="flux-2-pro", params={"num": 5}), [("params", "num")]),
    (
        "flux-aspect-enum",
        spec(model="flux-kontext", params={"aspect": "5:4"}),
        [("params", "aspect")],
    ),
    ("flux-mode-enum", spec(model="flux-kontext", params={"mode": "ultra"}), [("params", "mode")]),
    (
        "z-image-size-preset",
        spec(model="z-image-turbo", params={"size": "4K"}),
        [("params", "size")],
    ),
    (
        "seedream-size-preset",
        spec(model="doubao-seedream-5-0-260128", params={"size": "1MP"}),
        [("params", "size")],
    ),
    (
        "mj-video-batch-of-three",
        spec(
            model="mj-video-v1",
            prompt=None,
            images=[{"url": "https://e.x/f.png"}],
            params={"batch_size": 3},
        ),
        [("params", "batch_size")],
    ),
    (
        "mj-video-loop-as-string",
        spec(
            model="mj-video-v1",
            prompt=None,
            images=[{"url": "https://e.x/f.png"}],
            params={"loop": "yes"},
        ),
        [("params", "loop")],
    ),
    (
        "seedream-has-no-aspect",
        spec(model="doubao-seedream-4-5-251128", params={"aspect": "1:1"}),
        [("params", "aspect")],
    ),
    (
        "flux-four-references",
        spec(model="flux-2-max", images=[{"url": "https://e.x/a.png"}] * 4),
        [("images",)],
    ),
    (
        "z-image-takes-no-images",
        spec(model="z-image-turbo", images=[{"url": "https://e.x/a.png"}]),
        [("images",)],
    ),
    ("image-url-not-http", spec(images=[{"url": "file:///etc/passwd"}]), [("images", 0, "url")]),
    ("image-extra-key", spec(images=[{"url": "https://e.x/a.png", "w": 3}]), [("images", 0, "w")]),
    ("image-not-object", spec(images=["https://e.x/a.png"]), [("images", 0)]),
    ("prompt-required", spec(prompt=None), [("prompt",)]),
    ("prompt-blank", spec(model="flux-kontext", prompt="   "), [("prompt",)]),
    ("prompt-too-long", spec(prompt="x" * 5001), [("prompt",)]),
    ("params-not-object", spec(params=["aspect"]), [("params",)]),
    ("video-without-first-frame", spec(model=GROK_VIDEO, prompt="cat"), [("images",)]),
    (
        "video-two-frames",
        spec(model=GROK_VIDEO, images=[{"url": "https://e.x/a.png"}] * 2),
        [("images",)],
    ),
    (
        "video-frame-inline",
        spec(model=GROK_VIDEO, images=[{"url": PNG_DATA_URL}]),
        [("images", 0, "url")],
    ),
    (
        "video-duration-16",
        spec(model=GROK_VIDEO, params={"duration": 16}, images=[{"url": "https://e.x/a.png"}]),
        [("params", "duration")],
    ),
    (
        "video-ratio-21-9",
        spec(model=GROK_VIDEO, params={"ratio": "21:9"}, images=[{"url": "https://e.x/a.png"}]),
        [("params", "ratio")],
    ),
    ("mj-video-without-frame", spec(model="mj-video-v1", prompt=None), [("images",)]),
    ("describe-without-image", spec(action="describe", prompt=None), [("images",)]),
    (
        "describe-two-images",
        spec(action="describe", prompt=None, images=[{"url": "https://e.x/a.png"}] * 2),
        [("images",)],
    ),
    (
        "describe-with-prompt",
        spec(action="describe", images=[{"url": "https://e.x/a.png"}]),
        [("prompt",)],
    ),
    (
        "blend-one-image",
        spec(action="blend", prompt=None, images=[{"url": "https://e.x/a.png"}]),
        [("images",)],
    ),
    (
        "blend-six-images",
        spec(action="blend", prompt=None, images=[{"url": "https://e.x/a.png"}] * 6),
        [("images",)],
    ),
    ("split-without-source", spec(action="split", prompt=None), [("source",)]),
    ("split-without-index", follow_up("split"), [("source", "index")]),
    ("split-index-0", follow_up("split", 0), [("source", "index")]),
    ("variation-index-5", follow_up("variation", 5), [("source", "index")]),
    ("reroll-with-index", follow_up("reroll", 2), [("source", "index")]),
    ("upscale-type-enum", follow_up("upscale", params={"type": "sharp"}), [("params", "type")]),
    (
        "upscale-of-a-grid",
        follow_up("upscale", source_model="mj-v7", source_action="imagine"),
        [("source", "job_id")],
    ),
    (
        "split-of-a-split",
        follow_up("split", 1, source_model="mj-v7", source_action="split"),
        [("source", "job_id")],
    ),
    ("zoom-scale-above-2", follow_up("zoom", params={"scale": 2.5}), [("params", "scale")]),
    ("zoom-scale-1", follow_up("zoom", params={"scale": 1.0}), [("params", "scale")]),
    ("pan-needs-direction", follow_up("pan"), [("params", "direction")]),
    ("follow-up-with-prompt", follow_up("vary", prompt="more red"), [("prompt",)]),
    ("imagine-with-source", spec(has_source=True), [("source",)]),
    (
        "source-of-another-provider",
        follow_up("split", 1, source_model="flux-kontext", source_action="generate"),
        [("source", "job_id")],
    ),
    ("model-missing", spec(model=None), [("model",)]),
    (
        "source-model-retired",
        follow_up("split", 1, source_model="mj-v5", source_action="imagine"),
        [("source", "job_id")],
    ),
]


@pytest.mark.parametrize(("fields", "locs"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_refused_spec_points_at_the_offending_field(
    fields: dict[str, Any], locs: list[tuple[str | int, ...]]
) -> None:
    with pytest.raises(SpecError) as caught:
        CATALOGUE.validate(**fields)
    assert [loc for loc, _ in caught.value.errors] == locs
    assert all(msg for _, msg in caught.value.errors)


def test_every_fault_in_a_spec_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        CATALOGUE.validate(**spec(prompt=None, params={"chaos": 101}, images=[{"url": "x"}]))
    assert {loc for loc, _ in caught.value.errors} == {
        ("prompt",),
        ("params", "chaos"),
        ("images", 0, "url"),
    }
    assert "params.chaos" in str(caught.value)


ACCEPTED = [
    (
        "mj-imagine-full",
        spec(
            params={
                "aspect": "16:9",
                "stylize": 250,
                "quality": 0.5,
                "chaos": 10,
                "seed": 7,
                "no": ["text"],
            }
        ),
        {"aspect": "16:9", "stylize": 250, "quality": 0.5, "chaos": 10, "seed": 7, "no": ["text"]},
    ),
    ("mj-imagine-none-dropped", spec(params={"aspect": None}), {}),
    (
        "flux-kontext-mode-left-to-the-catalogue",
        spec(model="flux-kontext", params={"num": 2}),
        {"num": 2},
    ),
    ("flux-2-mode", spec(model="flux-2-max", params={"mode": "max"}), {"mode": "max"}),
    ("z-image-size", spec(model="z-image-turbo", params={"size": "2K"}), {"size": "2K"}),
    (
        "seedream-size",
        spec(model="doubao-seedream-4-5-251128", params={"size": "4K", "num": 2}),
        {"size": "4K", "num": 2},
    ),
    (
        "mj-video-knobs",
        spec(
            model="mj-video-v1",
            prompt=None,
            images=[{"url": "https://e.x/f.png"}],
            params={"motion": "high", "loop": True, "batch_size": 4},
        ),
        {"motion": "high", "loop": True, "batch_size": 4},
    ),
    (
        "flux-inline-reference",
        spec(model="flux-kontext", images=[{"url": PNG_DATA_URL}]),
        {},
    ),
    (
        "grok-video-duration-default",
        spec(model=GROK_VIDEO, prompt=None, images=[{"url": "https://e.x/f.png"}]),
        {"duration": 5},
    ),
    (
        "upscale-type-default",
        follow_up("upscale", source_model="mj-v7", source_action="split"),
        {"type": "subtle"},
    ),
    ("zoom-1-5", follow_up("zoom", params={"scale": 1.5}), {"scale": 1.5}),
    ("pan-left", follow_up("pan", params={"direction": "left"}), {"direction": "left"}),
    ("split-tile-4", follow_up("split", 4, source_model="niji-7", source_action="imagine"), {}),
    (
        "describe-one-url",
        spec(action="describe", prompt=None, images=[{"url": "https://e.x/a.png"}]),
        {},
    ),
    (
        "blend-three",
        spec(
            action="blend",
            prompt=None,
            params={"aspect": "3:2"},
            images=[{"url": "https://e.x/a.png"}] * 3,
        ),
        {"aspect": "3:2"},
    ),
    (
        "mj-video-first-frame",
        spec(model="mj-video-v1", prompt=None, images=[{"url": "https://e.x/f.png"}]),
        {},
    ),
]


@pytest.mark.parametrize(
    ("fields", "params"), [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED]
)
def test_an_accepted_spec_keeps_given_params_and_fills_meaningful_defaults(
    fields: dict[str, Any], params: dict[str, Any]
) -> None:
    validated = CATALOGUE.validate(**fields)
    assert validated.params == params
    assert validated.images == (fields["images"] or [])


def test_a_follow_up_without_a_model_takes_the_source_jobs_model() -> None:
    validated = CATALOGUE.validate(
        **follow_up("variation", 2, model=None, source_model="niji-6", source_action="imagine")
    )
    assert (validated.model, validated.provider, validated.source_index) == (
        "niji-6",
        "midjourney",
        2,
    )


def test_validated_spec_carries_what_scheduling_needs() -> None:
    validated = CATALOGUE.validate(**spec(model="z-image-turbo", prompt="a mug"))
    assert validated.provider == "z-image"
    assert validated.family == "image"
    assert validated.expected_seconds == 8.0
    assert validated.price_points is None
    assert validated.result_field == "image_urls"


def test_overrides_replace_endpoint_and_single_model_paths() -> None:
    catalogue = build_catalogue(
        CatalogueOverrides(
            paths={
                "midjourney.upscale": "/mj/upscale/",
                "midjourney.video_result": "midjourney/video/result/{id}",
                "flux-kontext:generate:submit": "flux/generate",
                "flux-kontext:generate:result": "flux/result/{id}",
                "account.balance": "account/points",
            }
        )
    )
    assert catalogue.action("mj-v7", "upscale").submit_path == "mj/upscale"
    assert catalogue.action("mj-video-v1").result_path == "midjourney/video/result/{id}"
    assert catalogue.action("mj-v7").result_path == "midjourney/result/{id}"
    assert catalogue.action("flux-kontext").submit_path == "flux/generate"
    assert catalogue.action("flux-kontext").result_path_for("a/b") == "flux/result/a%2Fb"
    assert catalogue.action("flux-2-pro").submit_path == "image/generate"
    assert catalogue.balance_path == "account/points"


def test_the_midjourney_video_result_falls_back_to_the_midjourney_result_path() -> None:
    video = CATALOGUE.action("mj-video-v1")
    assert (video.result_path, video.result_fallback_path) == (
        "video/result/{id}",
        "midjourney/result/{id}",
    )
    assert CATALOGUE.action("mj-v7").result_fallback_path is None


def test_a_video_result_path_equal_to_the_fallback_polls_one_path() -> None:
    catalogue = build_catalogue(
        CatalogueOverrides(paths={"midjourney.video_result": "midjourney/result/{id}"})
    )
    assert catalogue.action("mj-video-v1").result_fallback_path is None


def test_flux_mode_is_a_per_model_default_an_override_can_add_or_remove() -> None:
    assert CATALOGUE.action("flux-kontext").default_params == {"mode": "pro"}
    assert CATALOGUE.action("flux-2-pro").default_params == {}
    catalogue = build_catalogue(
        CatalogueOverrides(
            default_params={
                "flux-2-pro": {"mode": "pro"},
                "flux-2-max:generate": {"mode": "max"},
                "flux-kontext": {"mode": None},
            }
        )
    )
    assert catalogue.action("flux-2-pro").default_params == {"mode": "pro"}
    assert catalogue.action("flux-2-max").default_params == {"mode": "max"}
    assert catalogue.action("flux-kontext").default_params == {}


@pytest.mark.parametrize(
    "default_params",
    [{"flux-2-pro": {"mode": "ultra"}}, {"z-image-turbo": {"mode": "pro"}}, {"gpt-1": {}}],
    ids=["bad-value", "unknown-param", "unknown-model"],
)
def test_a_default_param_the_model_would_refuse_stops_the_start(
    default_params: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="catalogue"):
        build_catalogue(CatalogueOverrides(default_params=default_params))


def test_overrides_set_prices_and_durations_most_specific_first() -> None:
    catalogue = build_catalogue(
        CatalogueOverrides(
            prices={"mj-v7": 8, "mj-v7:upscale": 4},
            expected_seconds={"flux-2-max": 30, "flux-2-max:generate": 25.5},
        )
    )
    assert catalogue.action("mj-v7").price_points == 8
    assert catalogue.action("mj-v7", "upscale").price_points == 4
    assert catalogue.action("mj-v61").price_points is None
    assert catalogue.action("flux-2-max").expected_seconds == 25.5


@pytest.mark.parametrize(
    "overrides",
    [
        {"paths": {"midjourney.upscal": "x"}},
        {"paths": {"flux-kontext:imagine:submit": "x"}},
        {"prices": {"dall-e-3": 3}},
        {"expected_seconds": {"mj-v7:generate": 3}},
        {"paths": {"image.result": "image/result"}},
        {"paths": {"image.generate": "image/{id}"}},
        {"paths": {"image.generate": "https://evil.example/x"}},
    ],
    ids=[
        "typo-endpoint",
        "unknown-action",
        "unknown-model-price",
        "wrong-action-duration",
        "result-without-id",
        "submit-with-placeholder",
        "absolute-url",
    ],
)
def test_overrides_with_mistakes_are_refused_at_build_time(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="catalogue"):
        build_catalogue(CatalogueOverrides.model_validate(overrides))


def test_overrides_parse_from_the_json_setting() -> None:
    overrides = CatalogueOverrides.model_validate_json('{"prices": {"z-image-turbo": 2}}')
    assert build_catalogue(overrides).action("z-image-turbo").price_points == 2


def test_catalogue_json_is_serialisable_and_lists_every_action() -> None:
    exported = json.loads(json.dumps(CATALOGUE.json_schema()))
    assert exported["providers"] == list(PROVIDERS)
    mj = next(m for m in exported["models"] if m["id"] == "mj-v7")
    assert mj["actions"][0]["name"] == "imagine"
    assert {a["name"] for a in mj["actions"]} >= {"split", "upscale", "describe", "blend"}


PARAM_SCHEMAS = sorted(
    {(m.id, a.name): a for m in CATALOGUE.models for a in m.actions.values()}.items()
)


@pytest.mark.parametrize(
    "action", [a for _, a in PARAM_SCHEMAS], ids=[f"{m}:{n}" for (m, n), _ in PARAM_SCHEMAS]
)
def test_params_schema_is_valid_json_schema_refusing_unknown_keys(action: Any) -> None:
    schema = action.params_json_schema()
    jsonschema_rs.meta.validate(schema)
    validator = jsonschema_rs.validator_for(schema)
    assert not validator.is_valid({"surely_not_a_param": 1})
    assert validator.is_valid(
        action.params_model.model_validate(_example(action)).model_dump(
            mode="json", exclude_none=True
        )
    )


def _example(action: Any) -> dict[str, Any]:
    return {"direction": "up"} if action.name == "pan" else {}
