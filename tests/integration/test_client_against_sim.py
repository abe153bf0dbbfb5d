"""The real MetaChat client against the simulator over real HTTP on 127.0.0.1.

Each test starts its own simulator (fast or instant profile) on a free port, so counters and
balances belong to that test alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import pytest

from metachat import (
    CatalogueOverrides,
    MetaChatClient,
    SubmitRequest,
    UpstreamAuthError,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTask,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUncertain,
    build_catalogue,
    make_http_client,
)
from sim import SimConfig, SimServer
from tests.support.pictures import data_url, noisy_picture

API_KEY = "sk-integration-0123456789"
REF = {"url": "https://example.com/reference.png"}
T = TypeVar("T")
POLL_LIMIT = 20.0
# Quicker than the "fast" profile: a Midjourney clip takes under a second.
TIME_SCALE = 0.005


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


@pytest.fixture
def start_sim() -> Iterator[Callable[..., SimServer]]:
    """Start a simulator from a profile plus config fields; stopped after the test."""
    started: list[SimServer] = []

    def start(profile: str = "fast", **overrides: Any) -> SimServer:
        config = SimConfig.for_profile(
            profile, **{"seed": 1, "time_scale": TIME_SCALE, **overrides}
        )
        server = SimServer(config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@asynccontextmanager
async def client_for(
    sim: SimServer, *, api_key: str = API_KEY, read_timeout: float = 10.0
) -> AsyncIterator[MetaChatClient]:
    async with make_http_client(read_timeout=read_timeout, trust_env=False) as http:
        yield MetaChatClient(http, build_catalogue(), base_url=sim.base_url, api_key=api_key)


async def until_done(client: MetaChatClient, model: str, action: str, task_id: str) -> UpstreamTask:
    """Poll until the task is terminal; a task still running after ``POLL_LIMIT`` fails the test."""
    async with asyncio.timeout(POLL_LIMIT):
        while True:
            task = await client.fetch(model, action, task_id)
            if task.is_terminal:
                return task
            await asyncio.sleep(0.05)


async def finished(client: MetaChatClient, request: SubmitRequest) -> UpstreamTask:
    task_id = await client.submit(request)
    return await until_done(client, request.model, request.action, task_id)


FRESH = [
    pytest.param(SubmitRequest("mj-v7", "imagine", prompt="a lighthouse"), "image", 40, id="mj"),
    pytest.param(
        SubmitRequest("niji-6", "imagine", prompt="a fox", params={"aspect": "2:3"}),
        "image",
        30,
        id="niji",
    ),
    pytest.param(SubmitRequest("mj-v7", "describe", images=[REF]), "prompts", 10, id="describe"),
    pytest.param(SubmitRequest("mj-v7", "blend", images=[REF, REF]), "image", 40, id="blend"),
    pytest.param(SubmitRequest("mj-video-v1", "video", images=[REF]), "video", 600, id="mj-video"),
    pytest.param(
        SubmitRequest("flux-kontext", "generate", prompt="mug", params={"mode": "pro", "num": 2}),
        "images2",
        48,
        id="flux-kontext",
    ),
    pytest.param(
        SubmitRequest("flux-2-pro", "generate", prompt="mug"), "image", 30, id="flux-2-pro"
    ),
    pytest.param(
        SubmitRequest("flux-2-max", "generate", prompt="mug"), "image", 60, id="flux-2-max"
    ),
    pytest.param(
        SubmitRequest("z-image-turbo", "generate", prompt="mug", params={"aspect": "3:2"}),
        "image",
        8,
        id="z-image",
    ),
    pytest.param(
        SubmitRequest("doubao-seedream-5-0-pro-260628", "generate", prompt="mug"),
        "image",
        40,
        id="seedream-5-pro",
    ),
    pytest.param(
        SubmitRequest("doubao-seedream-5-0-260128", "generate", prompt="mug", params={"num": 2}),
        "images2",
        60,
        id="seedream-5",
    ),
    pytest.param(
        SubmitRequest("doubao-seedream-4-5-251128", "generate", prompt="mug"),
        "image",
        25,
        id="seedream-4-5",
    ),
    pytest.param(
        SubmitRequest(
            "grok-imagine-image-2.0", "generate", prompt="mug", params={"aspect": "16:9"}
        ),
        "image",
        20,
        id="grok-image",
    ),
    pytest.param(
        SubmitRequest("grok-imagine-image-quality", "generate", prompt="mug"),
        "image",
        40,
        id="grok-image-quality",
    ),
    pytest.param(
        SubmitRequest(
            "grok-imagine-video-1.5-preview",
            "generate",
            prompt="a cat asleep",
            params={"duration": 10, "ratio": "16:9", "resolution": "720p"},
            images=[REF],
        ),
        "video",
        3550,
        id="grok-video",
    ),
]


@pytest.mark.parametrize(("request_", "output", "points"), FRESH)
def test_every_fresh_action_runs_to_success_with_fetchable_files_and_its_price(
    start_sim: Callable[..., SimServer], request_: SubmitRequest, output: str, points: int
) -> None:
    sim = start_sim()

    async def scenario() -> UpstreamTask:
        async with client_for(sim) as client:
            return await finished(client, request_)

    task = run(scenario())

    assert task.status == "succeeded"
    assert task.points == points
    assert task.progress == 100
    if output == "prompts":
        assert len(task.prompts) == 4
        return
    urls = [task.video_url] if output == "video" else task.image_urls
    assert len(urls) == (2 if output == "images2" else 1)
    for url in urls:
        assert url is not None and url.startswith(sim.root_url + "/oss/")
        file = httpx.get(url, trust_env=False)
        assert file.status_code == 200
        assert file.headers["content-type"] == ("video/mp4" if output == "video" else "image/png")
    assert sim.stats()["tasks_created"] == 1


FOLLOW_UPS = [
    pytest.param("split", "grid", {}, 2, id="split"),
    pytest.param("variation", "grid", {}, 3, id="variation"),
    pytest.param("reroll", "grid", {}, None, id="reroll"),
    pytest.param("upscale", "tile", {"type": "creative"}, None, id="upscale"),
    pytest.param("vary", "tile", {"type": "strong"}, None, id="vary"),
    pytest.param("zoom", "tile", {"scale": 1.5}, None, id="zoom"),
    pytest.param("pan", "tile", {"direction": "up"}, None, id="pan"),
]


@pytest.mark.parametrize(("action", "source", "params", "index"), FOLLOW_UPS)
def test_every_midjourney_follow_up_runs_on_its_source(
    start_sim: Callable[..., SimServer],
    action: str,
    source: str,
    params: dict[str, Any],
    index: int | None,
) -> None:
    sim = start_sim()

    async def scenario() -> UpstreamTask:
        async with client_for(sim) as client:
            grid = await client.submit(SubmitRequest("mj-v7", "imagine", prompt="a harbour"))
            await until_done(client, "mj-v7", "imagine", grid)
            source_id = grid
            if source == "tile":
                split = SubmitRequest("mj-v7", "split", source_task_id=grid, source_index=1)
                source_id = (await finished(client, split)).task_id
            follow_up = SubmitRequest(
                "mj-v7", action, params=params, source_task_id=source_id, source_index=index
            )
            return await finished(client, follow_up)

    task = run(scenario())

    assert task.status == "succeeded"
    assert len(task.image_urls) == 1
    assert task.points is not None and task.points > 0
    assert sim.stats()["duplicates"] == {}


def test_a_failed_task_reports_its_reason_and_costs_nothing(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("instant", starting_balance=1000)

    async def scenario() -> tuple[UpstreamTask, int | None]:
        async with client_for(sim) as client:
            task = await finished(client, SubmitRequest("mj-v7", "imagine", prompt="x sim:fail"))
            return task, await client.balance()

    task, balance = run(scenario())
    assert (task.status, task.failure_reason, task.points) == ("failed", "内容审核未通过", None)
    assert balance == 1000


def test_balance_and_usage_follow_succeeded_tasks(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim("instant", starting_balance=1000)

    async def scenario() -> tuple[int | None, list[Any]]:
        async with client_for(sim) as client:
            task = await finished(client, SubmitRequest("z-image-turbo", "generate", prompt="a"))
            assert task.status == "succeeded"
            return await client.balance(), await client.usage_records()

    balance, records = run(scenario())
    assert balance == 992
    assert [(r.model, r.points) for r in records] == [("z-image-turbo", 8)]
    assert records[0].created_at is not None


def test_numeric_statuses_read_as_ours(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim("instant", numeric_status=True)

    async def scenario() -> UpstreamTask:
        async with client_for(sim) as client:
            return await finished(client, SubmitRequest("mj-v61", "imagine", prompt="p"))

    assert run(scenario()).status == "succeeded"


def test_an_empty_balance_refuses_submits_as_quota_exceeded(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim()
    sim.configure(balance=0)

    async def scenario() -> None:
        async with client_for(sim) as client:
            await client.submit(SubmitRequest("flux-2-pro", "generate", prompt="mug"))

    with pytest.raises(UpstreamQuotaExceeded):
        run(scenario())
    assert sim.stats()["tasks_created"] == 0


def test_bad_params_upstream_are_a_permanent_rejection(start_sim: Callable[..., SimServer]) -> None:
    sim = start_sim()

    async def scenario() -> None:
        async with client_for(sim) as client:
            await client.submit(SubmitRequest("mj-v7", "imagine", prompt="p sim:reject"))

    with pytest.raises(UpstreamRejected) as caught:
        run(scenario())
    assert caught.value.message == "绘图描述中存在错误的参数，请修改后重新提交。"  # noqa: RUF001


@pytest.mark.parametrize(
    ("overrides", "retry_after"),
    [
        pytest.param({"rate_limit_rps": 1, "rate_limit_burst": 1}, 1.0, id="token-bucket"),
        pytest.param({"rate_429_rate": 1.0, "retry_after_seconds": 7}, 7.0, id="injected"),
    ],
)
def test_a_429_is_rate_limited_with_retry_after(
    start_sim: Callable[..., SimServer], overrides: dict[str, Any], retry_after: float
) -> None:
    sim = start_sim(**overrides)

    async def scenario() -> None:
        async with client_for(sim) as client:
            if "rate_limit_rps" in overrides:
                await client.submit(SubmitRequest("flux-2-pro", "generate", prompt="first"))
            await client.submit(SubmitRequest("flux-2-pro", "generate", prompt="second"))

    with pytest.raises(UpstreamRateLimited) as caught:
        run(scenario())
    assert caught.value.retry_after == retry_after
    assert "second" not in sim.stats()["submits_by_prompt"]


@pytest.mark.parametrize(
    ("model", "action", "status"),
    [
        pytest.param("grok-imagine-video-1.5-preview", "generate", 500, id="video-500-quirk"),
        pytest.param("flux-2-pro", "generate", 200, id="image-200-fail"),
        pytest.param("mj-v7", "imagine", 200, id="midjourney-200-fail"),
    ],
)
def test_an_unknown_task_id_is_task_not_found_not_an_outage(
    start_sim: Callable[..., SimServer], model: str, action: str, status: int
) -> None:
    sim = start_sim()

    async def scenario() -> None:
        async with client_for(sim) as client:
            await client.fetch(model, action, "0" * 32)

    with pytest.raises(UpstreamTaskNotFound) as caught:
        run(scenario())
    assert caught.value.http_status == status


def test_a_read_timeout_after_the_upstream_accepted_is_uncertain_and_submitted_once(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim(read_timeout_rate=1.0, hang_seconds=5.0)

    async def scenario() -> None:
        async with client_for(sim, read_timeout=0.3) as client:
            await client.submit(SubmitRequest("flux-2-pro", "generate", prompt="lost answer"))

    with pytest.raises(UpstreamUncertain):
        run(scenario())
    assert sim.stats()["submits_by_prompt"] == {"lost answer": 1}


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"error_5xx_rate": 1.0}, UpstreamTransient, id="5xx"),
        pytest.param({"malformed_rate": 1.0}, UpstreamInvalidResponse, id="malformed"),
    ],
)
def test_injected_faults_map_to_the_error_taxonomy(
    start_sim: Callable[..., SimServer], overrides: dict[str, Any], error: type[Exception]
) -> None:
    sim = start_sim(**overrides)

    async def scenario() -> None:
        async with client_for(sim) as client:
            for n in range(6):
                with pytest.raises(error):
                    await client.submit(SubmitRequest("flux-2-pro", "generate", prompt=f"p{n}"))

    run(scenario())
    assert sim.stats()["faults_injected"] == 6


def test_a_wrong_key_is_an_auth_error_that_does_not_echo_the_key(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim(api_key="sk-the-right-one-0000")

    async def scenario() -> None:
        async with client_for(sim, api_key="sk-a-wrong-key-1111") as client:
            await client.balance()

    with pytest.raises(UpstreamAuthError) as caught:
        run(scenario())
    assert caught.value.http_status == 401
    assert "sk-a-wrong-key-1111" not in str(caught.value) + repr(caught.value)


async def _polled_to_the_end(
    client: MetaChatClient, request: SubmitRequest
) -> tuple[UpstreamTask, int]:
    """The finished task and how many times the client fetched it."""
    task_id = await client.submit(request)
    fetches = 0
    async with asyncio.timeout(POLL_LIMIT):
        while True:
            task = await client.fetch(request.model, request.action, task_id)
            fetches += 1
            if task.is_terminal:
                return task, fetches
            await asyncio.sleep(0.05)


MJ_VIDEO = SubmitRequest("mj-video-v1", "video", images=[REF])


def test_a_wrong_midjourney_video_result_path_costs_exactly_one_extra_poll(
    start_sim: Callable[..., SimServer],
) -> None:
    # The legacy profile's video/result does not know Midjourney clips.
    sim = start_sim("legacy", time_scale=TIME_SCALE)

    async def scenario() -> tuple[UpstreamTask, int]:
        async with client_for(sim) as client:
            return await _polled_to_the_end(client, MJ_VIDEO)

    task, fetches = run(scenario())

    assert task.status == "succeeded" and task.video_url is not None
    stats = sim.stats()
    assert fetches >= 2
    assert stats["polls"] == fetches + 1
    assert stats["polls_by_path"] == {"video/result": 1, "midjourney/result": fetches}


def test_a_right_midjourney_video_result_path_costs_no_extra_poll(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim()

    async def scenario() -> tuple[UpstreamTask, int]:
        async with client_for(sim) as client:
            return await _polled_to_the_end(client, MJ_VIDEO)

    task, fetches = run(scenario())

    assert task.status == "succeeded"
    assert sim.stats()["polls_by_path"] == {"video/result": fetches}


def test_a_batch_of_midjourney_clips_yields_every_clip(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("instant")
    request = SubmitRequest(
        "mj-video-v1",
        "video",
        params={"motion": "high", "loop": False, "batch_size": 4},
        images=[REF],
    )

    async def scenario() -> UpstreamTask:
        async with client_for(sim) as client:
            return await finished(client, request)

    task = run(scenario())

    assert len(task.video_urls) == 4 and task.video_url == task.video_urls[0]
    assert task.points == 4 * 600
    for url in task.video_urls:
        assert httpx.get(url, trust_env=False).headers["content-type"] == "video/mp4"


def test_a_large_inline_reference_is_shrunk_so_the_upstream_takes_it(
    start_sim: Callable[..., SimServer],
) -> None:
    # About 2 MB of base64 in, while this simulator answers 413 above 1 MB.
    picture = noisy_picture(1000, 700, "PNG")
    sim = start_sim("instant", max_body_bytes=1_000_000)
    request = SubmitRequest(
        "flux-kontext",
        "generate",
        prompt="put a hat on it",
        images=[{"url": data_url(picture, "image/png")}],
    )

    async def scenario() -> UpstreamTask:
        async with client_for(sim) as client:
            return await finished(client, request)

    assert run(scenario()).status == "succeeded"
    assert sim.stats()["tasks_created"] == 1


def test_flux_on_the_legacy_paths_works_with_the_overrides_the_check_prints(
    start_sim: Callable[..., SimServer],
) -> None:
    sim = start_sim("legacy", time_scale=TIME_SCALE)
    overrides = CatalogueOverrides(
        paths={
            "flux-2-pro:generate:submit": "flux/generate",
            "flux-2-pro:generate:result": "flux/result/{id}",
        },
        default_params={"flux-2-pro": {"mode": "pro"}},
    )

    async def scenario() -> UpstreamTask:
        async with make_http_client(trust_env=False) as http:
            client = MetaChatClient(
                http, build_catalogue(overrides), base_url=sim.base_url, api_key=API_KEY
            )
            return await finished(client, SubmitRequest("flux-2-pro", "generate", prompt="mug"))

    assert run(scenario()).status == "succeeded"
    assert sim.stats()["submits_by_path"] == {"flux/generate": 1}
