"""Input crafted to break the API answers 4xx problem+json pointing at the field, on every route:
cursors that were never handed out, NUL characters in query values and path ids, unknown query
parameters, JSON beyond the parser's limits and numbers of the wrong type."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.support.api_client import ApiClient, ApiClients
from tests.support.api_data import flux_spec

PROBLEM = "application/problem+json"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _list_cursor(order: str = "desc", **fields: object) -> str:
    data = {"o": order, "t": "2026-12-01T08:30:00+00:00", "i": "job_01abc", **fields}
    return _b64(json.dumps(data).encode())


def _assert_problem(response: httpx.Response, status: int, loc: list[str | int]) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert loc in [error["loc"] for error in response.json()["errors"]], response.json()


@pytest.fixture
def ids(alice: ApiClient) -> dict[str, str]:
    batch = alice.post("/v1/batches", json={"jobs": [flux_spec()]}).json()
    return {"job": alice.post("/v1/jobs", json=flux_spec()).json()["id"], "batch": batch["id"]}


@pytest.fixture
def dashboard_cookie(clients: ApiClients, admin: ApiClient) -> dict[str, str]:
    login = clients.call(
        "POST",
        "/dashboard/login",
        content=f"api_key={admin.key.api_key}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert login.status_code == 303, login.text
    name, _, value = login.headers["set-cookie"].split(";")[0].partition("=")
    return {"Cookie": f"{name}={value}"}


CRAFTED_CURSORS = [
    pytest.param(_list_cursor(i="job_\x00x"), id="nul-in-the-id"),
    pytest.param(_list_cursor(t="0001-01-01T00:00:00+05:00"), id="time-before-year-1-in-utc"),
    pytest.param(_list_cursor(t="9999-12-31T23:59:59-05:00"), id="time-after-year-9999-in-utc"),
    pytest.param(_list_cursor(i=["job_1"]), id="id-not-text"),
    pytest.param("!!!not-base64!!!", id="garbage"),
    pytest.param(_b64(b"\x00\xff\xfe"), id="binary"),
    pytest.param(_b64(b'"just a string"'), id="json-string"),
]


@pytest.mark.parametrize("cursor", CRAFTED_CURSORS)
@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/batches", "/v1/batches/{batch}/jobs"])
def test_a_crafted_list_cursor_is_invalid(
    alice: ApiClient, ids: dict[str, str], path: str, cursor: str
) -> None:
    if path.endswith("/jobs") and path != "/v1/jobs":
        cursor = cursor.replace(_list_cursor()[:4], _list_cursor("asc")[:4])
    response = alice.get(path.format(**ids), params={"cursor": cursor})

    _assert_problem(response, 422, ["query", "cursor"])


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param(_b64(b"d:\x00"), id="nul-in-the-id"),
        pytest.param(_b64(b"d:msg_01\nx"), id="not-an-id"),
        pytest.param("%%%", id="garbage"),
    ],
)
def test_a_crafted_delivery_cursor_is_invalid(alice: ApiClient, cursor: str) -> None:
    response = alice.get("/v1/webhooks/deliveries", params={"cursor": cursor})

    _assert_problem(response, 422, ["query", "cursor"])


NUL_QUERIES = [
    pytest.param("/v1/jobs", "batch_id", id="jobs-batch_id"),
    pytest.param("/v1/jobs", "cursor", id="jobs-cursor"),
    pytest.param("/v1/batches", "cursor", id="batches-cursor"),
    pytest.param("/v1/batches/{batch}/jobs", "model", id="batch-jobs-model"),
    pytest.param("/v1/jobs/{job}/events", "cursor", id="events-cursor"),
    pytest.param("/v1/webhooks/deliveries", "job_id", id="deliveries-job_id"),
    pytest.param("/v1/webhooks/deliveries", "batch_id", id="deliveries-batch_id"),
    pytest.param("/v1/webhooks/deliveries", "cursor", id="deliveries-cursor"),
    pytest.param("/v1/webhooks/deliveries", "state", id="deliveries-state"),
    pytest.param("/v1/stats", "api_key_id", id="stats-api_key_id"),
    pytest.param("/v1/stats", "since", id="stats-since"),
]


@pytest.mark.parametrize(("path", "name"), NUL_QUERIES)
def test_a_nul_in_a_query_value_is_invalid(
    admin: ApiClient, ids: dict[str, str], path: str, name: str
) -> None:
    response = admin.get(path.format(**ids), params={name: "job_\x00"})

    _assert_problem(response, 422, ["query", name])


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        pytest.param("GET", "/v1/jobs/job_%00", "job_id", id="job"),
        pytest.param("POST", "/v1/jobs/%00/cancel", "job_id", id="job-cancel"),
        pytest.param("GET", "/v1/jobs/%00/events", "job_id", id="job-events"),
        pytest.param("GET", "/v1/batches/bat_%00", "batch_id", id="batch"),
        pytest.param("GET", "/v1/batches/%00/jobs", "batch_id", id="batch-jobs"),
        pytest.param("POST", "/v1/batches/%00/cancel", "batch_id", id="batch-cancel"),
        pytest.param("POST", "/v1/batches/%00/retry", "batch_id", id="batch-retry"),
        pytest.param(
            "POST", "/v1/webhooks/deliveries/msg_%00/redeliver", "delivery_id", id="redeliver"
        ),
    ],
)
def test_a_nul_in_a_path_id_is_not_found_and_pointed_at(
    admin: ApiClient, method: str, path: str, name: str
) -> None:
    _assert_problem(admin.request(method, path), 404, ["path", name])


def test_a_delivery_id_that_cannot_exist_is_not_found(admin: ApiClient) -> None:
    response = admin.post("/v1/webhooks/deliveries/" + "x" * 300 + "/redeliver")

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "params", "status", "loc"),
    [
        pytest.param("/dashboard", {"key": "key_\x00"}, 422, ["query", "key"], id="key"),
        pytest.param("/dashboard", {"window": "\x00"}, 422, ["query", "window"], id="window"),
        pytest.param(
            "/dashboard/fragment", {"key": "\x00"}, 422, ["query", "key"], id="fragment-key"
        ),
        pytest.param("/dashboard/jobs/job_%00", {}, 404, ["path", "job_id"], id="job-page"),
    ],
)
def test_the_dashboard_refuses_nul_characters_with_a_problem(
    clients: ApiClients,
    dashboard_cookie: dict[str, str],
    path: str,
    params: dict[str, str],
    status: int,
    loc: list[str],
) -> None:
    response = clients.call("GET", path, params=params, headers=dashboard_cookie)

    _assert_problem(response, status, loc)


def test_a_since_that_leaves_the_calendar_in_utc_is_invalid(admin: ApiClient) -> None:
    response = admin.get("/v1/stats", params={"since": "0001-01-01T00:00:00+05:00"})

    _assert_problem(response, 422, ["query", "since"])


@pytest.mark.parametrize("path", ["/v1/webhooks/deliveries", "/v1/stats"])
def test_an_unknown_query_parameter_is_invalid(admin: ApiClient, path: str) -> None:
    response = admin.get(path, params={"stauts": "dead"})

    _assert_problem(response, 422, ["query", "stauts"])


def _post_raw(client: ApiClient, path: str, body: bytes | str) -> httpx.Response:
    return client.post(path, content=body, headers={"Content-Type": "application/json"})


DEEP = "[" * 5000 + "]" * 5000
LONG_INTEGER = '{"model": "flux-2-pro", "prompt": "x", "metadata": {"n": ' + "7" * 5000 + "}}"


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/batches"])
@pytest.mark.parametrize(
    ("body", "offset"),
    [
        pytest.param(DEEP, 64, id="5000-deep"),
        pytest.param('{"jobs": [' + DEEP + "]}", 72, id="5000-deep-inside"),
        pytest.param(LONG_INTEGER, LONG_INTEGER.index("7777"), id="5000-digit-integer"),
    ],
)
def test_json_beyond_the_parsers_limits_is_invalid_and_pointed_at(
    alice: ApiClient, path: str, body: str, offset: int
) -> None:
    response = _post_raw(alice, path, body)

    _assert_problem(response, 422, [offset])


def test_a_body_that_is_not_utf8_is_still_a_bad_request(alice: ApiClient) -> None:
    response = _post_raw(alice, "/v1/jobs", b'{"prompt": "\xff\xfe"}')

    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        pytest.param("/v1/jobs", flux_spec(priority=True), ["priority"], id="priority-true"),
        pytest.param("/v1/jobs", flux_spec(priority="5"), ["priority"], id="priority-text"),
        pytest.param("/v1/jobs", flux_spec(priority=1.0), ["priority"], id="priority-float"),
        pytest.param(
            "/v1/jobs",
            flux_spec(deadline_seconds=True),
            ["deadline_seconds"],
            id="deadline-true",
        ),
        pytest.param(
            "/v1/jobs",
            flux_spec(deadline_seconds="900"),
            ["deadline_seconds"],
            id="deadline-text",
        ),
        pytest.param(
            "/v1/jobs",
            flux_spec(source={"job_id": "job_1", "index": True}),
            ["source", "index"],
            id="source-index-true",
        ),
        pytest.param(
            "/v1/batches",
            {"jobs": [flux_spec()], "max_points": True},
            ["max_points"],
            id="max-points-true",
        ),
        pytest.param(
            "/v1/batches",
            {"jobs": [flux_spec(priority=False)]},
            ["jobs", 0, "priority"],
            id="batch-job-priority-false",
        ),
        pytest.param(
            "/v1/batches",
            {"jobs": [flux_spec()], "defaults": {"priority": True}},
            ["defaults", "priority"],
            id="defaults-priority-true",
        ),
    ],
)
def test_numbers_must_have_their_type(
    alice: ApiClient, path: str, body: dict[str, Any], loc: list[str | int]
) -> None:
    _assert_problem(alice.post(path, json=body), 422, loc)


def test_whole_numbers_are_still_taken_where_floats_are_expected(alice: ApiClient) -> None:
    response = alice.post("/v1/jobs", json=flux_spec(deadline_seconds=900, priority=-3))

    assert response.status_code == 202
    assert response.json()["priority"] == -3


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/v1/jobs", "GET, POST"),
        ("PUT", "/v1/batches/bat_1", "GET"),
        ("GET", "/v1/batches/bat_1/cancel", "POST"),
        ("PUT", "/dashboard/login", "GET, POST"),
    ],
)
def test_a_wrong_method_lists_every_method_of_the_path(
    alice: ApiClient, method: str, path: str, allow: str
) -> None:
    response = alice.request(method, path)

    assert response.status_code == 405
    assert response.headers["allow"] == allow
