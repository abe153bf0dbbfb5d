"""Who may call, and how often: 401s, the optional App ID, and the token bucket's 429."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.sim.conftest import AUTH, BASE, SimHarness

UNAUTHORIZED = {"status": "authentication_error", "message": "Unauthorized Request"}
BODY = {"prompt": "p", "model": "z-image-turbo"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Bearer "}, id="empty-key"),
        pytest.param({"Authorization": "Basic dXNlcjpwdw=="}, id="not-bearer"),
        pytest.param({"Authorization": "sk-test"}, id="no-scheme"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "image/generate", id="submit"),
        pytest.param("GET", "image/result/abc", id="poll"),
        pytest.param("GET", "account/balance", id="balance"),
    ],
)
def test_a_missing_or_malformed_bearer_key_is_a_401(
    sim: SimHarness, headers: dict[str, str], method: str, path: str
) -> None:
    response = sim.request(method, f"{BASE}/{path}", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.json() == UNAUTHORIZED


def test_any_key_is_accepted_unless_one_is_configured(make_sim: Any) -> None:
    open_sim = make_sim()
    strict = make_sim(api_key="sk-right")
    wrong = {"Authorization": "Bearer sk-wrong"}
    right = {"Authorization": "Bearer sk-right"}

    assert open_sim.submit("image/generate", BODY, headers=wrong)["status"] == "Success"
    assert (
        strict.request("POST", f"{BASE}/image/generate", json=BODY, headers=wrong).status_code
        == 401
    )
    assert strict.submit("image/generate", BODY, headers=right)["status"] == "Success"


@pytest.mark.parametrize(
    ("app_id", "status"),
    [
        pytest.param(None, 401, id="missing"),
        pytest.param("app-wrong", 401, id="wrong"),
        pytest.param("app-1", 200, id="right"),
    ],
)
def test_strict_mode_requires_the_app_id_header(
    make_sim: Any, app_id: str | None, status: int
) -> None:
    sim = make_sim(require_app_id=True, app_id="app-1")
    headers = dict(AUTH) if app_id is None else {**AUTH, "X-App-ID": app_id}
    response = sim.request("POST", f"{BASE}/image/generate", json=BODY, headers=headers)
    assert response.status_code == status


def test_secrets_never_show_in_the_admin_config(make_sim: Any) -> None:
    sim = make_sim(api_key="sk-very-secret", require_app_id=True, app_id="app-secret")
    text = sim.request("GET", "/_sim/config").text
    assert "sk-very-secret" not in text and "app-secret" not in text
    assert "sk-very-secret" not in repr(sim.sim.config)


def test_an_unknown_path_is_a_404(sim: SimHarness) -> None:
    response = sim.request("POST", f"{BASE}/flux/teleport", json=BODY, headers=AUTH)
    assert response.status_code == 404
    assert response.json()["status"] == "not_found_error"


def test_requests_beyond_the_rate_are_429_with_retry_after(make_sim: Any) -> None:
    sim = make_sim(rate_limit_rps=2, rate_limit_burst=2)
    answers = [
        sim.request("POST", f"{BASE}/image/generate", json=BODY, headers=AUTH) for _ in range(3)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json() == {"status": "rate_limit_error", "message": "Too Many Requests"}
    assert answers[2].headers["Retry-After"] == "1"
    assert sim.stats()["rate_limited"] == 1
    assert sim.stats()["tasks_created"] == 2


def test_the_bucket_refills_with_time(make_sim: Any) -> None:
    sim = make_sim(rate_limit_rps=1)
    assert sim.submit("image/generate", BODY)["status"] == "Success"
    assert sim.request("POST", f"{BASE}/image/generate", json=BODY, headers=AUTH).status_code == 429
    sim.clock.advance(1.0)
    assert sim.submit("image/generate", BODY)["status"] == "Success"


def test_retry_after_rounds_the_wait_up_to_whole_seconds(make_sim: Any) -> None:
    sim = make_sim(rate_limit_rps=0.25)
    sim.submit("image/generate", BODY)
    response = sim.request("GET", f"{BASE}/image/result/x", headers=AUTH)
    assert response.headers["Retry-After"] == "4"


def test_the_rate_can_be_lifted_at_runtime(make_sim: Any) -> None:
    sim = make_sim(rate_limit_rps=1)
    sim.submit("image/generate", BODY)
    sim.request("POST", "/_sim/config", json={"rate_limit_rps": 0})
    assert all(sim.submit("image/generate", BODY)["status"] == "Success" for _ in range(5))


def test_admin_and_file_routes_need_no_key(sim: SimHarness) -> None:
    assert sim.request("GET", "/_sim/stats").status_code == 200
    assert sim.request("GET", "/_sim/health").status_code == 200
