"""The simulated OpenAI-compatible host: OpenAI's shapes, base64 PNGs whose hashes it keeps,
token usage, latency around the configured medians, and errors in OpenAI's format."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, SimHarness

LLM = "/v1"


def post(sim: SimHarness, path: str, body: dict[str, Any], **headers: str) -> Any:
    return sim.request("POST", f"{LLM}/{path}", json=body, headers={**AUTH, **headers})


def test_a_generation_answers_base64_pngs_and_remembers_their_hashes(make_sim: Any) -> None:
    sim = make_sim("instant")
    body = {"model": "gpt-image-1.5", "prompt": "a red kite", "n": 3, "quality": "low"}
    response = post(sim, "images/generations", body)
    assert response.status_code == 200
    answer = response.json()
    pngs = [base64.b64decode(entry["b64_json"]) for entry in answer["data"]]
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    assert len(set(pngs)) == 3
    assert answer["usage"]["output_tokens"] == 3 * 272
    assert answer["usage"]["total_tokens"] == sum(
        answer["usage"][k] for k in ("input_tokens", "output_tokens")
    )
    sent = [image["sha256"] for image in sim.sim.llm.sent]
    assert sent == [hashlib.sha256(png).hexdigest() for png in pngs]
    assert sim.stats()["llm"]["images_sent"] == 3


def test_an_edit_takes_image_urls_and_a_chat_answers_with_usage(make_sim: Any) -> None:
    sim = make_sim("instant")
    edit = {
        "model": "gpt-image-1",
        "prompt": "add a hat",
        "images": [{"image_url": "https://example.com/cat.png"}],
    }
    assert post(sim, "images/edits", edit).status_code == 200
    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "Why is the sea blue?"}]}
    answer = post(sim, "chat/completions", chat).json()
    assert answer["object"] == "chat.completion"
    (choice,) = answer["choices"]
    assert "Why is the sea blue?" in choice["message"]["content"]
    assert choice["finish_reason"] == "stop"
    assert answer["usage"]["prompt_tokens"] > 0 and answer["usage"]["completion_tokens"] > 0


def test_the_model_list_names_the_served_models(make_sim: Any) -> None:
    sim = make_sim("instant", llm_models=["gpt-image-1", "gpt-4.1"])
    answer = sim.request("GET", f"{LLM}/models", headers=AUTH).json()
    assert [m["id"] for m in answer["data"]] == ["gpt-image-1", "gpt-4.1"]


@pytest.mark.parametrize(
    ("path", "body", "status", "param", "code"),
    [
        ("images/generations", {"model": "gpt-image-1", "prompt": ""}, 400, "prompt", None),
        ("images/generations", {"model": "gpt-image-1", "prompt": "x", "n": 11}, 400, "n", None),
        ("images/generations", {"model": "dall-e-9", "prompt": "x"}, 404, None, "model_not_found"),
        (
            "images/generations",
            {"model": "gpt-image-1", "prompt": "sim:reject"},
            400,
            None,
            "moderation_blocked",
        ),
        (
            "images/edits",
            {"model": "gpt-image-1", "prompt": "x", "images": []},
            400,
            "images",
            None,
        ),
        ("chat/completions", {"model": "gpt-4.1", "messages": []}, 400, "messages", None),
        (
            "chat/completions",
            {"model": "gpt-image-1", "messages": [{"role": "user", "content": "x"}]},
            404,
            None,
            "model_not_found",
        ),
    ],
    ids=[
        "empty-prompt",
        "too-many",
        "unknown-model",
        "moderated",
        "edit-no-image",
        "no-messages",
        "image-model-chat",
    ],
)
def test_refusals_come_in_openais_error_format(
    make_sim: Any, path: str, body: dict[str, Any], status: int, param: str | None, code: str | None
) -> None:
    response = post(make_sim("instant"), path, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["param"], error["code"]) == (param, code)


def test_a_missing_key_is_a_401_and_the_shared_bucket_a_429_with_retry_after(
    make_sim: Any,
) -> None:
    sim = make_sim("instant", api_key="sk-test", rate_limit_rps=0.001, rate_limit_burst=1)
    chat = {"model": "gpt-4.1", "messages": [{"role": "user", "content": "hi"}]}
    refused = post(sim, "chat/completions", chat, Authorization="Bearer wrong")
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"
    assert post(sim, "chat/completions", chat).status_code == 200
    limited = post(sim, "chat/completions", chat)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1


def test_latency_is_lognormal_around_the_kinds_median(make_sim: Any) -> None:
    sim = make_sim("realistic", llm_durations={"image": 30.0, "edit": 40.0, "chat": 4.0})
    body = json.dumps({"model": "gpt-image-1", "prompt": "x"}).encode()
    delays = sorted(
        sim.sim.llm.images("images/generations", body, {"authorization": "Bearer k"}).delay
        for _ in range(101)
    )
    assert 20.0 < delays[50] < 45.0
    assert delays[0] > 5.0
