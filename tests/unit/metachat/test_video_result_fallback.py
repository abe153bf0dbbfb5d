"""The Midjourney video result: its own path first, the Midjourney result path once when that
one does not know the task; whichever answered is asked first from then on."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from metachat import UpstreamTaskNotFound, UpstreamTransient
from tests.unit.metachat.conftest import Upstream, fixture_response, make_client

pytestmark = pytest.mark.anyio

VIDEO_RESULT = "/open/v1/video/result/"
MJ_RESULT = "/open/v1/midjourney/result/"


def answering(by_prefix: Mapping[str, str]) -> Upstream:
    """A fake MetaChat answering each result path with a fixture file."""

    def respond(request: httpx.Request) -> httpx.Response:
        for prefix, fixture in by_prefix.items():
            if request.url.path.startswith(prefix):
                return fixture_response(fixture)
        raise AssertionError(f"unexpected request {request.url.path}")

    return Upstream(respond)


def paths(upstream: Upstream) -> list[str]:
    return [r.url.path.rsplit("/", 1)[0] + "/" for r in upstream.requests]


async def test_a_wrong_video_result_path_costs_one_extra_poll_then_is_remembered() -> None:
    upstream = answering(
        {
            VIDEO_RESULT: "video-result-unknown-id-500.json",
            MJ_RESULT: "mj-video-result-success.json",
        }
    )
    client = make_client(upstream)

    tasks = [await client.fetch("mj-video-v1", "video", f"mjv-{n}") for n in range(3)]

    assert [t.video_url for t in tasks] == [tasks[0].video_url] * 3
    assert tasks[0].status == "succeeded"
    assert paths(upstream) == [VIDEO_RESULT, MJ_RESULT, MJ_RESULT, MJ_RESULT]


@pytest.mark.parametrize(
    "missing",
    ["endpoint-not-found-404.json", "result-not-found-200.json"],
    ids=["path-404", "task-not-found-200"],
)
async def test_any_kind_of_not_knowing_the_task_falls_back(missing: str) -> None:
    upstream = answering({VIDEO_RESULT: missing, MJ_RESULT: "mj-video-result-success.json"})
    task = await make_client(upstream).fetch("mj-video-v1", "video", "mjv-1")
    assert task.status == "succeeded"
    assert paths(upstream) == [VIDEO_RESULT, MJ_RESULT]


async def test_a_right_video_result_path_never_touches_the_fallback() -> None:
    upstream = answering(
        {VIDEO_RESULT: "video-result-success.json", MJ_RESULT: "mj-video-result-success.json"}
    )
    client = make_client(upstream)
    for n in range(3):
        await client.fetch("mj-video-v1", "video", f"mjv-{n}")
    assert paths(upstream) == [VIDEO_RESULT] * 3


async def test_a_task_neither_path_knows_is_not_found_after_two_requests() -> None:
    upstream = answering(
        {VIDEO_RESULT: "video-result-unknown-id-500.json", MJ_RESULT: "result-not-found-200.json"}
    )
    with pytest.raises(UpstreamTaskNotFound) as caught:
        await make_client(upstream).fetch("mj-video-v1", "video", "gone")
    assert caught.value.http_status == 500
    assert paths(upstream) == [VIDEO_RESULT, MJ_RESULT]


async def test_an_outage_on_the_video_result_path_is_not_a_reason_to_switch() -> None:
    upstream = answering(
        {VIDEO_RESULT: "internal-500.json", MJ_RESULT: "mj-video-result-success.json"}
    )
    with pytest.raises(UpstreamTransient):
        await make_client(upstream).fetch("mj-video-v1", "video", "mjv-1")
    assert paths(upstream) == [VIDEO_RESULT]


async def test_after_switching_a_task_only_the_first_path_knows_switches_back() -> None:
    known_on_video = {"mjv-new"}

    def respond(request: httpx.Request) -> httpx.Response:
        task_id = request.url.path.rsplit("/", 1)[1]
        on_video = request.url.path.startswith(VIDEO_RESULT)
        if on_video == (task_id in known_on_video):
            return fixture_response("mj-video-result-success.json")
        return fixture_response("result-not-found-200.json")

    upstream = Upstream(respond)
    client = make_client(upstream)
    await client.fetch("mj-video-v1", "video", "mjv-old")  # video, then midjourney
    await client.fetch("mj-video-v1", "video", "mjv-new")  # midjourney, then video
    await client.fetch("mj-video-v1", "video", "mjv-new")  # video
    assert paths(upstream) == [VIDEO_RESULT, MJ_RESULT, MJ_RESULT, VIDEO_RESULT, VIDEO_RESULT]
