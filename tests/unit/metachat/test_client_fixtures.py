"""Every recorded MetaChat answer, served to the client: what each one becomes in our words."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from metachat import (
    SubmitRequest,
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTask,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUnknownModel,
    UsageRecord,
)
from tests.unit.metachat.conftest import (
    FIXTURES,
    Upstream,
    fixture_response,
    load_fixture,
    make_client,
)

pytestmark = pytest.mark.anyio

MJ_ID = "3f2a9c0e7b4d4e0f9a1b2c3d4e5f6a7b"
IMG_ID = "b7c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5"
OSS = "https://mc-oss-cn.oss-cn-shanghai.aliyuncs.com"


@dataclass(frozen=True)
class Call:
    op: str
    model: str = ""
    action: str = ""
    task_id: str = "t-1"


SUBMIT_MJ = Call("submit", "mj-v7", "imagine")
SUBMIT_FLUX = Call("submit", "flux-kontext", "generate")
FETCH_MJ = Call("fetch", "mj-v7", "imagine", MJ_ID)
FETCH_IMAGE = Call("fetch", "flux-kontext", "generate", IMG_ID)
FETCH_VIDEO = Call("fetch", "grok-imagine-video-1.5-preview", "generate", "job-1")
DESCRIBE = Call("fetch", "mj-v7", "describe", "d-1")
BALANCE = Call("balance")
USAGE = Call("usage")


@dataclass(frozen=True)
class Case:
    fixture: str
    call: Call
    returns: Any = None
    raises: type[UpstreamError] | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("submit-success.json", SUBMIT_MJ, returns=MJ_ID),
    Case("submit-missing-id.json", SUBMIT_MJ, raises=UpstreamInvalidResponse),
    Case(
        "submit-rejected-params.json",
        SUBMIT_MJ,
        raises=UpstreamRejected,
        attrs={
            "message": load_fixture("submit-rejected-params.json")["body"]["message"],
            "http_status": 200,
        },
    ),
    Case("submit-quota-exceeded.json", SUBMIT_FLUX, raises=UpstreamQuotaExceeded),
    Case(
        "submit-quota-exceeded-429.json",
        SUBMIT_FLUX,
        raises=UpstreamQuotaExceeded,
        attrs={"http_status": 429},
    ),
    Case(
        "submit-unknown-model.json",
        SUBMIT_FLUX,
        raises=UpstreamUnknownModel,
        attrs={"received": "gpt-image-1"},
    ),
    Case(
        "auth-401.json",
        SUBMIT_MJ,
        raises=UpstreamAuthError,
        attrs={"kind": "authentication_error", "http_status": 401},
    ),
    Case(
        "forbidden-403.json",
        FETCH_MJ,
        raises=UpstreamAuthError,
        attrs={"kind": "permission_error", "http_status": 403},
    ),
    Case(
        "internal-500.json",
        SUBMIT_MJ,
        raises=UpstreamTransient,
        attrs={"sent": True, "http_status": 500},
    ),
    Case(
        "non-json-502.json",
        FETCH_IMAGE,
        raises=UpstreamTransient,
        attrs={"http_status": 502, "message": "HTTP 502 Bad Gateway"},
    ),
    Case(
        "service-unavailable-503-json.json",
        SUBMIT_FLUX,
        raises=UpstreamTransient,
        attrs={"retry_after": 30.0, "message": "Service Unavailable"},
    ),
    Case(
        "rate-limited-429.json", SUBMIT_MJ, raises=UpstreamRateLimited, attrs={"retry_after": None}
    ),
    Case(
        "rate-limited-429-retry-after.json",
        FETCH_MJ,
        raises=UpstreamRateLimited,
        attrs={"retry_after": 7.0},
    ),
    Case(
        "endpoint-not-found-404.json",
        FETCH_MJ,
        raises=UpstreamEndpointMissing,
        attrs={"http_status": 404, "path": "/open/v1/midjourney/result/" + MJ_ID},
    ),
    Case(
        "payload-too-large-413.json",
        SUBMIT_FLUX,
        raises=UpstreamRejected,
        attrs={"http_status": 413},
    ),
    Case("result-not-found-200.json", FETCH_IMAGE, raises=UpstreamTaskNotFound),
    Case(
        "video-result-unknown-id-500.json",
        FETCH_VIDEO,
        raises=UpstreamTaskNotFound,
        attrs={"http_status": 500},
    ),
    Case(
        "mj-result-submitted.json",
        FETCH_MJ,
        returns={"status": "queued", "progress": 0, "image_urls": [], "points": None},
    ),
    Case("mj-result-in-progress.json", FETCH_MJ, returns={"status": "running", "progress": 46}),
    Case(
        "mj-result-success.json",
        FETCH_MJ,
        returns={
            "task_id": MJ_ID,
            "status": "succeeded",
            "progress": 100,
            "image_urls": [f"{OSS}/mj/3f2a9c0e-grid.png"],
            "video_url": None,
            "points": 40,
        },
    ),
    Case(
        "mj-result-numeric-status.json",
        FETCH_MJ,
        returns={
            "status": "succeeded",
            "image_urls": [f"{OSS}/mj/3f2a9c0e-grid.png"],
            "points": None,
        },
    ),
    Case(
        "mj-result-numeric-failure.json",
        FETCH_MJ,
        returns={"status": "failed", "failure_reason": "banned prompt", "image_urls": []},
    ),
    Case(
        "mj-result-uppercase-status.json",
        FETCH_MJ,
        returns={"status": "succeeded", "progress": 100, "points": 40},
    ),
    Case(
        "mj-result-list-fallback.json",
        FETCH_MJ,
        returns={"status": "succeeded", "image_urls": [f"{OSS}/mj/3f2a9c0e-grid.png"]},
    ),
    Case(
        "mj-video-result-success.json",
        Call("fetch", "mj-video-v1", "video", "mjv-1"),
        returns={"status": "succeeded", "video_url": f"{OSS}/mj/clip.mp4", "points": 300},
    ),
    Case(
        "mj-video-result-batch.json",
        Call("fetch", "mj-video-v1", "video", "mjv-2"),
        returns={
            "status": "succeeded",
            "video_url": f"{OSS}/mj/clip-0.mp4",
            "video_urls": [f"{OSS}/mj/clip-0.mp4", f"{OSS}/mj/clip-1.mp4"],
        },
    ),
    Case(
        "describe-result-success.json",
        DESCRIBE,
        returns={
            "status": "succeeded",
            "prompts": ["a lighthouse at dawn, oil painting", "a coastal tower in morning fog"],
        },
    ),
    Case(
        "describe-result-description-text.json",
        DESCRIBE,
        returns={
            "status": "succeeded",
            "prompts": [
                "1️⃣ a lighthouse at dawn, oil painting --ar 3:2",
                "2️⃣ a coastal tower in morning fog --ar 3:2",
                "3️⃣ a white beacon over grey sea --ar 3:2",
                "4️⃣ a lonely tower, watercolor --ar 3:2",
            ],
            "points": 10,
        },
    ),
    Case(
        "describe-result-prompt-list.json",
        DESCRIBE,
        returns={
            "status": "succeeded",
            "prompts": ["a red fox in snow, ink wash", "a fox asleep under pines"],
        },
    ),
    Case(
        "describe-result-unknown-field.json",
        DESCRIBE,
        returns={
            "status": "succeeded",
            "prompts": [],
            "raw": load_fixture("describe-result-unknown-field.json")["body"]["data"],
        },
    ),
    Case(
        "image-result-success.json",
        FETCH_IMAGE,
        returns={
            "status": "succeeded",
            "image_urls": [f"{OSS}/img/b7c1-0.png", f"{OSS}/img/b7c1-1.png"],
            "points": 24,
        },
    ),
    Case(
        "image-result-failure.json",
        FETCH_IMAGE,
        returns={"status": "failed", "failure_reason": "内容审核未通过", "image_urls": []},
    ),
    Case(
        "result-missing-optional-fields.json",
        FETCH_IMAGE,
        returns={
            "status": "succeeded",
            "progress": None,
            "points": None,
            "image_urls": [f"{OSS}/img/b7c1-0.png"],
        },
    ),
    Case("result-unknown-status.json", FETCH_IMAGE, raises=UpstreamInvalidResponse),
    Case("result-success-without-output.json", FETCH_IMAGE, raises=UpstreamInvalidResponse),
    Case("result-not-json-200.json", FETCH_IMAGE, raises=UpstreamInvalidResponse),
    Case(
        "video-result-success.json",
        FETCH_VIDEO,
        returns={
            "status": "succeeded",
            "video_url": f"{OSS}/clip.mp4",
            "image_urls": [],
            "points": 1775,
        },
    ),
    Case(
        "video-result-failure.json",
        FETCH_VIDEO,
        returns={"status": "failed", "failure_reason": "参考图无法下载", "video_url": None},
    ),
    Case("balance-success.json", BALANCE, returns=12850),
    Case(
        "usage-success.json",
        USAGE,
        returns=[
            UsageRecord(MJ_ID, "mj-v7", 40, datetime(2026, 5, 1, 10, 0, tzinfo=UTC)),
            UsageRecord(
                "job-1",
                "grok-imagine-video-1.5-preview",
                1775,
                datetime.fromtimestamp(1777629600, UTC),
            ),
        ],
    ),
    # The same answers seen by a different call mean something else.
    Case("result-not-found-200.json", SUBMIT_MJ, raises=UpstreamRejected),
    Case("video-result-unknown-id-500.json", SUBMIT_MJ, raises=UpstreamTransient),
    Case("auth-401.json", BALANCE, raises=UpstreamAuthError),
    Case("rate-limited-429.json", USAGE, raises=UpstreamRateLimited),
    Case("submit-quota-exceeded-429.json", FETCH_IMAGE, raises=UpstreamQuotaExceeded),
]


def _case_id(case: Case) -> str:
    return f"{case.fixture.removesuffix('.json')}-on-{case.call.op}"


async def _perform(case: Case) -> Any:
    upstream = Upstream(lambda request: fixture_response(case.fixture))
    client = make_client(upstream)
    call = case.call
    if call.op == "submit":
        images = (
            [{"url": "https://e.x/a.png"}] if call.model == "grok-imagine-video-1.5-preview" else []
        )
        return await client.submit(
            SubmitRequest(model=call.model, action=call.action, prompt="p", images=images)
        )
    if call.op == "fetch":
        return await client.fetch(call.model, call.action, call.task_id)
    if call.op == "balance":
        return await client.balance()
    return await client.usage_records(page=1, size=20)


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
async def test_each_recorded_answer_normalises_to_our_vocabulary(case: Case) -> None:
    if case.raises is not None:
        with pytest.raises(UpstreamError) as caught:
            await _perform(case)
        assert type(caught.value) is case.raises
        for name, value in case.attrs.items():
            assert getattr(caught.value, name) == value, name
        assert str(caught.value)
        return
    result = await _perform(case)
    if isinstance(result, UpstreamTask):
        seen = {name: getattr(result, name) for name in case.returns}
        assert seen == case.returns
        assert result.raw, "the raw task object is kept for debugging"
    else:
        assert result == case.returns


def test_every_fixture_file_has_an_expectation() -> None:
    on_disk = {path.name for path in FIXTURES.glob("*.json")}
    assert on_disk == {case.fixture for case in CASES}
