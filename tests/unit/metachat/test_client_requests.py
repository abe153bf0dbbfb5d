"""What the client puts on the wire: path, headers and JSON body for each family and action."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from metachat import CatalogueOverrides, SubmitRequest, build_catalogue
from tests.unit.metachat.conftest import API_KEY, APP_ID, BASE_URL, Upstream, make_client

pytestmark = pytest.mark.anyio

PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9"
    "awAAAABJRU5ErkJggg=="
)
FRAME = "https://cdn.example/frame.png"


def submitted(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "Success", "data": {"id": "task-9"}})


SHAPES = [
    (
        "mj-imagine",
        SubmitRequest("mj-v7", "imagine", prompt="a lighthouse", params={"aspect": "16:9"}),
        "midjourney/imagine",
        {"model": "mj-v7", "prompt": "a lighthouse", "params": {"aspect": "16:9"}},
    ),
    (
        "mj-imagine-no-params",
        SubmitRequest("niji-7", "imagine", prompt="a fox"),
        "midjourney/imagine",
        {"model": "niji-7", "prompt": "a fox"},
    ),
    (
        "mj-split",
        SubmitRequest("mj-v7", "split", source_task_id="grid-1", source_index=2),
        "midjourney/separate",
        {"id": "grid-1", "index": 2},
    ),
    (
        "mj-upscale",
        SubmitRequest("mj-v7", "upscale", params={"type": "creative"}, source_task_id="tile-1"),
        "midjourney/upscale",
        {"id": "tile-1", "type": "creative"},
    ),
    (
        "mj-variation",
        SubmitRequest("mj-v61", "variation", source_task_id="grid-1", source_index=4),
        "midjourney/variation",
        {"id": "grid-1", "index": 4},
    ),
    (
        "mj-reroll",
        SubmitRequest("mj-v7", "reroll", source_task_id="grid-1"),
        "midjourney/reroll",
        {"id": "grid-1"},
    ),
    (
        "mj-vary",
        SubmitRequest("mj-v7", "vary", params={"type": "strong"}, source_task_id="tile-1"),
        "midjourney/vary",
        {"id": "tile-1", "type": "strong"},
    ),
    (
        "mj-zoom",
        SubmitRequest("mj-v7", "zoom", params={"scale": 1.5}, source_task_id="tile-1"),
        "midjourney/zoom",
        {"id": "tile-1", "scale": 1.5},
    ),
    (
        "mj-pan",
        SubmitRequest("mj-v7", "pan", params={"direction": "left"}, source_task_id="tile-1"),
        "midjourney/pan",
        {"id": "tile-1", "direction": "left"},
    ),
    (
        "mj-describe",
        SubmitRequest("mj-v7", "describe", images=[{"url": FRAME}]),
        "midjourney/describe",
        {"model": "mj-v7", "images": [{"url": FRAME}]},
    ),
    (
        "mj-blend",
        SubmitRequest(
            "mj-v7", "blend", params={"aspect": "1:1"}, images=[{"url": FRAME}, {"url": FRAME}]
        ),
        "midjourney/blend",
        {"model": "mj-v7", "params": {"aspect": "1:1"}, "images": [{"url": FRAME}] * 2},
    ),
    (
        "mj-video-first-frame",
        SubmitRequest("mj-video-v1", "video", prompt="slow pan", images=[{"url": FRAME}]),
        "midjourney/video",
        {"model": "mj-video-v1", "prompt": "slow pan", "images": [{"url": FRAME}]},
    ),
    (
        "flux-inline-reference",
        SubmitRequest(
            "flux-kontext",
            "generate",
            prompt="put sunglasses on her",
            params={"mode": "pro"},
            images=[{"url": f"data:image/png;base64,{PNG_B64}"}],
        ),
        "image/generate",
        {
            "model": "flux-kontext",
            "prompt": "put sunglasses on her",
            "params": {"mode": "pro"},
            "images": [
                {
                    "type": "image/png",
                    "size": 70,
                    "w": 1,
                    "h": 1,
                    "b64": f"data:image/png;base64,{PNG_B64}",
                }
            ],
        },
    ),
    (
        "flux-kontext-mode-from-the-catalogue",
        SubmitRequest("flux-kontext", "generate", prompt="a mug", params={"num": 2}),
        "image/generate",
        {"model": "flux-kontext", "prompt": "a mug", "params": {"mode": "pro", "num": 2}},
    ),
    (
        "flux-2-without-mode",
        SubmitRequest("flux-2-pro", "generate", prompt="a mug"),
        "image/generate",
        {"model": "flux-2-pro", "prompt": "a mug"},
    ),
    (
        "mj-video-knobs",
        SubmitRequest(
            "mj-video-v1",
            "video",
            params={"motion": "low", "loop": True, "batch_size": 2},
            images=[{"url": FRAME}],
        ),
        "midjourney/video",
        {
            "model": "mj-video-v1",
            "params": {"motion": "low", "loop": True, "batch_size": 2},
            "images": [{"url": FRAME}],
        },
    ),
    (
        "z-image-size",
        SubmitRequest("z-image-turbo", "generate", prompt="a mug", params={"size": "2K"}),
        "image/generate",
        {"model": "z-image-turbo", "prompt": "a mug", "params": {"size": "2K"}},
    ),
    (
        "seedream",
        SubmitRequest("doubao-seedream-5-0-260128", "generate", prompt="a mug", params={"num": 2}),
        "image/generate",
        {"model": "doubao-seedream-5-0-260128", "prompt": "a mug", "params": {"num": 2}},
    ),
    (
        "grok-video",
        SubmitRequest(
            "grok-imagine-video-1.5-preview",
            "generate",
            prompt="a cat wakes up",
            params={"duration": 5, "ratio": "16:9"},
            images=[{"url": FRAME}],
        ),
        "video/generate",
        {
            "model": "grok-imagine-video-1.5-preview",
            "prompt": "a cat wakes up",
            "params": {"duration": 5, "ratio": "16:9"},
            "images": [{"url": FRAME}],
        },
    ),
]


@pytest.mark.parametrize(
    ("request_", "path", "body"), [s[1:] for s in SHAPES], ids=[s[0] for s in SHAPES]
)
async def test_submit_posts_the_actions_body_to_its_path(
    request_: SubmitRequest, path: str, body: dict[str, Any]
) -> None:
    upstream = Upstream(submitted)
    assert await make_client(upstream).submit(request_) == "task-9"
    assert upstream.last.method == "POST"
    assert str(upstream.last.url) == f"{BASE_URL}/{path}"
    assert upstream.last.headers["content-type"] == "application/json"
    assert upstream.last_json() == body


async def test_requests_carry_the_bearer_key_and_no_app_id_unless_configured() -> None:
    upstream = Upstream(submitted)
    await make_client(upstream).submit(SubmitRequest("mj-v7", "imagine", prompt="x"))
    assert upstream.last.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-app-id" not in upstream.last.headers


async def test_requests_carry_the_app_id_when_configured() -> None:
    upstream = Upstream(submitted)
    await make_client(upstream, app_id=APP_ID).submit(SubmitRequest("flux-2-pro", "generate", "x"))
    assert upstream.last.headers["x-app-id"] == APP_ID
    assert upstream.last.headers["authorization"] == f"Bearer {API_KEY}"


@pytest.mark.parametrize(
    ("job_params", "sent"),
    [({}, {"mode": "pro"}), ({"mode": "max", "num": 2}, {"mode": "max", "num": 2})],
    ids=["catalogue-default", "the-jobs-own-mode-wins"],
)
async def test_an_override_makes_flux_2_send_a_mode(
    job_params: dict[str, Any], sent: dict[str, Any]
) -> None:
    upstream = Upstream(submitted)
    client = make_client(
        upstream, overrides=CatalogueOverrides(default_params={"flux-2-pro": {"mode": "pro"}})
    )
    await client.submit(SubmitRequest("flux-2-pro", "generate", prompt="x", params=job_params))
    assert upstream.last_json()["params"] == sent


async def test_a_validated_spec_becomes_the_body_it_describes() -> None:
    spec = build_catalogue().validate(
        model="mj-v7",
        action="split",
        prompt=None,
        params={},
        images=[],
        has_source=True,
        source_index=1,
        source_model="mj-v7",
        source_action="imagine",
    )
    upstream = Upstream(submitted)
    await make_client(upstream).submit(SubmitRequest.from_spec(spec, source_task_id="grid-7"))
    assert upstream.last_json() == {"id": "grid-7", "index": 1}


@pytest.mark.parametrize(
    ("model", "action", "path"),
    [
        ("mj-v7", "imagine", "midjourney/result/abc"),
        ("mj-v7", "upscale", "midjourney/result/abc"),
        ("mj-video-v1", "video", "video/result/abc"),
        ("z-image-turbo", "generate", "image/result/abc"),
        ("grok-imagine-video-1.5-preview", "generate", "video/result/abc"),
    ],
    ids=["mj-imagine", "mj-upscale", "mj-video", "image", "video"],
)
async def test_fetch_gets_the_familys_result_path(model: str, action: str, path: str) -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"data": {"status": "submitted"}}))
    task = await make_client(upstream).fetch(model, action, "abc")
    assert task.task_id == "abc"
    assert upstream.last.method == "GET"
    assert str(upstream.last.url) == f"{BASE_URL}/{path}"


async def test_fetch_escapes_a_task_id_that_is_not_a_plain_path_segment() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"data": {"status": "submitted"}}))
    await make_client(upstream).fetch("flux-2-pro", "generate", "../account/balance")
    assert upstream.last.url.raw_path == b"/open/v1/image/result/..%2Faccount%2Fbalance"


async def test_account_calls_use_their_paths_and_paging() -> None:
    upstream = Upstream(lambda r: httpx.Response(200, json={"data": {"records": []}}))
    client = make_client(upstream)
    assert await client.usage_records(page=2, size=10) == []
    assert str(upstream.last.url) == f"{BASE_URL}/account/usage?page=2&size=10"
    upstream.respond = lambda r: httpx.Response(200, json={"data": {}})
    assert await client.balance() is None
    assert str(upstream.last.url) == f"{BASE_URL}/account/balance"


async def test_overridden_paths_are_the_ones_called() -> None:
    upstream = Upstream(submitted)
    overrides = CatalogueOverrides(
        paths={"flux-2-max:generate:submit": "flux/generate", "midjourney.split": "mj/split"}
    )
    client = make_client(upstream, overrides=overrides)
    await client.submit(SubmitRequest("flux-2-max", "generate", prompt="x"))
    assert str(upstream.last.url) == f"{BASE_URL}/flux/generate"
    await client.submit(SubmitRequest("mj-v7", "split", source_task_id="g", source_index=1))
    assert str(upstream.last.url) == f"{BASE_URL}/mj/split"


@pytest.mark.parametrize(
    "request_",
    [
        SubmitRequest("mj-v7", "upscale"),
        SubmitRequest("mj-v7", "split", source_task_id="grid-1"),
    ],
    ids=["follow-up-without-source", "split-without-index"],
)
async def test_a_follow_up_missing_its_source_is_refused_before_sending(
    request_: SubmitRequest,
) -> None:
    upstream = Upstream(submitted)
    with pytest.raises(ValueError, match="source"):
        await make_client(upstream).submit(request_)
    assert upstream.requests == []
