"""`metachat.probe` against a fake MetaChat: how each kind of answer is classified, which
overrides are suggested, and the exit code. The simulator runs are in
tests/integration/test_upstream_check.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from metachat import CatalogueOverrides, build_catalogue
from metachat.probe import (
    EXIT_AUTH,
    EXIT_INCONCLUSIVE,
    EXIT_MISCONFIGURED,
    EXIT_OK,
    Row,
    UpstreamReport,
    check_upstream,
)
from metachat.specs import SYNC_PROVIDERS
from tests.unit.metachat.conftest import APP_ID, Upstream, make_client

pytestmark = pytest.mark.anyio

PARAMS_REFUSAL = "绘图描述中存在错误的参数，请修改后重新提交。"  # noqa: RUF001
REFUSED = {"status": "Fail", "message": PARAMS_REFUSAL, "data": None}
NOT_FOUND = {"status": "Fail", "message": "任务不存在", "data": None}
NO_PATH = httpx.Response(404, json={"status": "not_found_error", "message": "Not Found"})

Special = Callable[[httpx.Request], httpx.Response | None]


def metachat(special: Special = lambda request: None) -> Upstream:
    """A MetaChat that refuses every probe the way it should, unless ``special`` answers."""

    def respond(request: httpx.Request) -> httpx.Response:
        answer = special(request)
        if answer is not None:
            return answer
        if request.url.host == LLM_HOST:
            return openai_host(request)
        path = request.url.path.removeprefix("/open/v1/")
        if path == "account/balance":
            return httpx.Response(200, json={"status": "Success", "data": {"balance": 120}})
        if path == "account/usage":
            return httpx.Response(200, json={"status": "Success", "data": {"records": []}})
        if "/result/" in path:
            return httpx.Response(200, json=NOT_FOUND)
        if path.startswith("flux/"):
            return NO_PATH
        return httpx.Response(200, json=REFUSED)

    return Upstream(respond)


LLM_HOST = "llm-api.mmchat.xyz"
SYNC_MODELS = [m.id for m in build_catalogue().models if m.provider in SYNC_PROVIDERS]
EMPTY_PROMPT = {
    "error": {
        "message": "Invalid 'prompt': empty string.",
        "type": "invalid_request_error",
        "param": "prompt",
        "code": None,
    }
}


def openai_host(request: httpx.Request) -> httpx.Response:
    """The OpenAI-compatible host: its model list, and a refusal of every empty request."""
    if request.url.path == "/v1/models":
        listed = [{"id": model} for model in SYNC_MODELS]
        return httpx.Response(200, json={"object": "list", "data": listed})
    return httpx.Response(400, json=EMPTY_PROMPT)


async def check(
    upstream: Upstream,
    *,
    overrides: dict[str, Any] | None = None,
    app_id: str | None = None,
) -> UpstreamReport:
    catalogue_overrides = CatalogueOverrides.model_validate(overrides or {})
    client = make_client(upstream, overrides=catalogue_overrides, app_id=app_id)
    return await check_upstream(client, overrides=overrides)


def row(report: UpstreamReport, what: str) -> Row:
    return next(r for r in report.rows if r.what == what)


def body(request: httpx.Request) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(request.content) if request.content else {}
    return parsed


async def test_every_path_refusing_the_probes_is_all_present_and_nothing_is_accepted() -> None:
    upstream = metachat()
    report = await check(upstream)
    assert report.exit_code == EXIT_OK
    assert report.overrides is None
    assert {r.answer for r in report.rows} == {"exists", "optional", "fallback"}
    assert report.requests == len(upstream.requests)
    submits = [body(r) for r in upstream.requests if r.method == "POST"]
    # Every submit carries what makes it impossible: an empty prompt, no images, or no source.
    assert all(
        b.get("prompt") == ""
        or b.get("images") == []
        or b.get("messages") == []
        or b.get("id") == "mcjobs-probe-0"
        for b in submits
    )
    paths = {r.path for r in report.rows}
    assert {"midjourney/imagine", "midjourney/pan", "image/generate", "video/generate"} <= paths
    assert {"midjourney/result/{id}", "image/result/{id}", "account/usage"} <= paths
    assert {"images/generations", "images/edits", "chat/completions", "models"} <= paths


async def test_the_openai_host_rows_say_which_models_it_does_not_serve() -> None:
    def without_imagen(request: httpx.Request) -> httpx.Response | None:
        if request.url.host != LLM_HOST:
            return None
        if request.url.path == "/v1/models":
            listed = [{"id": m} for m in SYNC_MODELS if not m.startswith(("imagen", "kimi"))]
            return httpx.Response(200, json={"data": listed})
        model = body(request).get("model", "")
        if model.startswith(("imagen", "kimi")):
            error = {"message": "no such model", "type": "invalid_request_error"}
            return httpx.Response(404, json={"error": {**error, "code": "model_not_found"}})
        return None

    report = await check(metachat(without_imagen))
    models = row(report, "llm.models")
    assert (models.answer, models.problem) == ("model refused", False)
    assert "imagen-4.0-generate-001" in models.detail
    images = row(report, "openai-image generate")
    assert (images.answer, images.problem) == ("model refused", True)
    assert "imagen-4.0-generate-001" in images.detail
    # a chat id the host lacks is noted, not a failure: the chat ids are our assumption
    chat = row(report, "openai-chat chat")
    assert (chat.answer, chat.problem) == ("model refused", False)
    assert report.exit_code == EXIT_MISCONFIGURED


async def test_a_missing_path_without_alternative_fails_the_check_without_overrides() -> None:
    report = await check(
        metachat(lambda r: NO_PATH if r.url.path.endswith("midjourney/vary") else None)
    )
    vary = row(report, "midjourney.vary")
    assert (vary.answer, vary.problem) == ("missing (404)", True)
    assert report.exit_code == EXIT_MISCONFIGURED
    assert report.overrides is None


async def test_a_missing_video_result_path_suggests_polling_the_fallback_directly() -> None:
    upstream = metachat(lambda r: NO_PATH if "/video/result/" in r.url.path else None)
    report = await check(upstream)
    assert report.exit_code == EXIT_MISCONFIGURED
    assert report.suggested == {"paths": {"mj-video-v1:video:result": "midjourney/result/{id}"}}


async def test_flux_refused_on_image_generate_is_switched_to_the_flux_paths_when_they_answer() -> (
    None
):
    def legacy(request: httpx.Request) -> httpx.Response | None:
        model = body(request).get("model", "") if request.method == "POST" else ""
        if request.url.path.endswith("image/generate") and model.startswith("flux"):
            message = f"Invalid enum value. Expected 'z-image-turbo', received '{model}'"
            return httpx.Response(200, json={"status": "Fail", "message": message})
        if request.url.path.endswith("flux/generate"):
            return httpx.Response(200, json=REFUSED)
        if "/flux/result/" in request.url.path:
            return httpx.Response(200, json=NOT_FOUND)
        return None

    current = {"prices": {"mj-v7": 8}}
    report = await check(metachat(legacy), overrides=current)

    generate = row(report, "image.generate")
    assert generate.answer == "model refused"
    assert "flux-kontext, flux-2-pro, flux-2-max" in generate.detail
    assert report.exit_code == EXIT_MISCONFIGURED
    assert report.overrides == {
        "prices": {"mj-v7": 8},
        "paths": {
            f"{model}:generate:{end}": path
            for model in ("flux-kontext", "flux-2-pro", "flux-2-max")
            for end, path in (("submit", "flux/generate"), ("result", "flux/result/{id}"))
        },
    }
    CatalogueOverrides.model_validate(report.overrides)


async def test_the_suggested_overrides_make_the_check_pass() -> None:
    def flux_only_on_flux_paths(request: httpx.Request) -> httpx.Response | None:
        model = body(request).get("model", "") if request.method == "POST" else ""
        if request.url.path.endswith("image/generate") and model.startswith("flux"):
            message = f"Invalid enum value. Expected 'z-image-turbo', received '{model}'"
            return httpx.Response(200, json={"status": "Fail", "message": message})
        if request.url.path.endswith("flux/generate"):
            return httpx.Response(200, json=REFUSED)
        if "/flux/result/" in request.url.path:
            return httpx.Response(200, json=NOT_FOUND)
        return None

    first = await check(metachat(flux_only_on_flux_paths))
    assert first.overrides is not None
    second = await check(metachat(flux_only_on_flux_paths), overrides=first.overrides)
    assert second.exit_code == EXIT_OK


MODE_REQUIRED = {"status": "Fail", "message": "params.mode: Expected 'pro' | 'max', received null"}
MODE_REFUSED = {"status": "Fail", "message": "params.mode: unknown key"}


def flux_mode(answer_when: str) -> Special:
    def special(request: httpx.Request) -> httpx.Response | None:
        sent = body(request) if request.method == "POST" else {}
        if not str(sent.get("model", "")).startswith("flux"):
            return None
        has_mode = "mode" in sent.get("params", {})
        if answer_when == "missing" and not has_mode:
            return httpx.Response(200, json=MODE_REQUIRED)
        if answer_when == "present" and has_mode:
            return httpx.Response(200, json=MODE_REFUSED)
        return None

    return special


async def test_a_required_mode_the_catalogue_does_not_send_is_named_with_its_override() -> None:
    report = await check(metachat(flux_mode("missing")))
    assert row(report, "flux-2-pro params.mode").answer == "required"
    assert row(report, "flux-2-pro params.mode").problem
    assert not row(report, "flux-kontext params.mode").problem  # it sends one already
    assert report.suggested == {
        "default_params": {"flux-2-pro": {"mode": "pro"}, "flux-2-max": {"mode": "max"}}
    }
    assert report.exit_code == EXIT_MISCONFIGURED


async def test_a_refused_mode_the_catalogue_sends_is_named_with_its_override() -> None:
    report = await check(metachat(flux_mode("present")))
    kontext = row(report, "flux-kontext params.mode")
    assert (kontext.answer, kontext.problem) == ("refused", True)
    assert report.suggested == {"default_params": {"flux-kontext": {"mode": None}}}


@pytest.mark.parametrize(
    ("status", "app_id", "hint"),
    [
        (401, None, "also need METACHAT_APP_ID, sent as the X-App-ID header"),
        (401, APP_ID, "check METACHAT_API_KEY and METACHAT_APP_ID"),
        (403, None, "expired or disabled"),
    ],
    ids=["401-without-app-id", "401-with-app-id", "403"],
)
async def test_an_auth_problem_stops_at_the_first_request_with_a_hint(
    status: int, app_id: str | None, hint: str
) -> None:
    kind = "authentication_error" if status == 401 else "permission_error"
    upstream = Upstream(lambda r: httpx.Response(status, json={"status": kind, "message": "no"}))
    report = await check(upstream, app_id=app_id)
    assert report.exit_code == EXIT_AUTH
    assert len(upstream.requests) == 1
    assert any(hint in h for h in report.hints)
    assert all(APP_ID not in h for h in report.hints)


async def test_an_unreachable_upstream_is_inconclusive_after_one_attempt() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    upstream = Upstream(refuse)
    report = await check(upstream)
    assert (report.exit_code, len(upstream.requests)) == (EXIT_INCONCLUSIVE, 1)
    assert any("METACHAT_BASE_URL" in h for h in report.hints)


async def test_a_429_is_waited_out_once_and_then_reported() -> None:
    limited = httpx.Response(429, json={"status": "rate_limit_error"}, headers={"Retry-After": "0"})
    seen: list[str] = []

    def once_then_always(request: httpx.Request) -> httpx.Response | None:
        path = request.url.path
        if path.endswith("midjourney/pan"):
            return limited
        if path.endswith("midjourney/zoom") and path not in seen:
            seen.append(path)
            return limited
        return None

    report = await check(metachat(once_then_always))
    assert row(report, "midjourney.zoom").answer == "exists"
    assert row(report, "midjourney.pan").answer == "rate limited"
    assert report.exit_code == EXIT_INCONCLUSIVE
    assert any("rate-limited" in h for h in report.hints)


async def test_a_quota_answer_means_the_path_exists_and_says_the_account_is_empty() -> None:
    quota = {"status": "rate_limit_error", "message": "You exceeded your current API quota."}
    report = await check(
        metachat(lambda r: httpx.Response(429, json=quota) if r.method == "POST" else None)
    )
    assert row(report, "image.generate").answer == "exists"
    assert report.exit_code == EXIT_OK
    assert any("out of API points" in h for h in report.hints)


async def test_a_path_that_accepts_a_probe_is_reported_loudly() -> None:
    accepted = httpx.Response(200, json={"status": "Success", "data": {"id": "oops-1"}})
    report = await check(
        metachat(lambda r: accepted if r.url.path.endswith("midjourney/describe") else None)
    )
    describe = row(report, "midjourney.describe")
    assert (describe.answer, describe.problem) == ("accepted", True)
    assert "oops-1" in describe.detail
    assert report.exit_code == EXIT_INCONCLUSIVE
    assert any("may have been created and charged" in h for h in report.hints)
