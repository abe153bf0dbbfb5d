"""No request answers 5xx: a property-based test throws arbitrary and crafted path ids, query
parameters, cursors, headers and bodies at every route of the app, the dashboard included, on
PostgreSQL (the stricter backend: NUL bytes, integer and time ranges, JSON it refuses).

Where `test_openapi_fuzz.py` follows the published schema, this one aims where a schema does not
look: cursors that decode to hostile JSON, times an offset pushes off the calendar, ids with NUL
characters, names no route declares, bodies that are almost a job spec.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.app import create_app
from core.db import Database
from core.settings import Settings
from tests.support.api_client import ApiClients, api_clients
from tests.support.api_data import flux_spec
from tests.support.webhook_rows import finish_job, make_key

_PATH_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    query_names: tuple[str, ...]


def _endpoints(app: FastAPI) -> list[Endpoint]:
    """Every (method, path) the app serves, with the query parameters it declares."""
    found: list[Endpoint] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(inner.routes)
                continue
            names: tuple[str, ...] = ()
            if isinstance(route, APIRoute):
                names = tuple(sorted(_query_names(route.dependant)))
            for method in sorted(getattr(route, "methods", None) or ()):
                found.append(Endpoint(method, route.path, names))

    walk(list(app.routes))
    return found


def _query_names(dependant: Any) -> set[str]:
    names = {field.alias for field in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


offsets = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)
times = st.one_of(
    st.datetimes(timezones=st.none() | offsets).map(dt.datetime.isoformat),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "", "now"]),
    st.text(max_size=30),
)
plausible_ids = st.from_regex(r"(job|bat|msg|key)_[0-9a-z]{1,40}", fullmatch=True)
hostile_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]) | st.just("\x00"),
    max_size=40,
)
ids = st.one_of(plausible_ids, hostile_text, st.just("x" * 300), st.just("job_\x00"))
list_cursors = st.builds(
    lambda order, at, row_id: _b64(json.dumps({"o": order, "t": at, "i": row_id}).encode()),
    st.sampled_from(["asc", "desc", "sideways"]),
    times | st.integers() | st.none(),
    ids | st.integers() | st.lists(st.integers(), max_size=2),
)
cursors = st.one_of(
    list_cursors,
    ids.map(lambda text: _b64(("d:" + text).encode())),
    st.binary(max_size=40).map(_b64),
    st.text(max_size=60),
)
query_values = st.one_of(
    hostile_text,
    cursors,
    times,
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["queued", "failed", "flux", "flux-2-pro", "asc", "desc", "true", "24h"]),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(hostile_text, inner, max_size=3),
    max_leaves=12,
)
spec_fields: dict[str, st.SearchStrategy[Any]] = {
    "model": st.sampled_from(["flux-2-pro", "mj-v7", "grok-video", ""]) | hostile_text,
    "action": st.sampled_from(["imagine", "split", "upscale", "generate"]) | hostile_text,
    "prompt": hostile_text,
    "params": st.dictionaries(st.sampled_from(["aspect", "num", "seed"]), json_values, max_size=2)
    | json_values,
    "images": st.lists(st.fixed_dictionaries({"url": hostile_text}), max_size=2) | json_values,
    "source": st.fixed_dictionaries({"job_id": ids}, optional={"index": json_scalars})
    | json_values,
    "webhook_url": st.sampled_from(["https://hooks.example.com/h", "ftp://x/", "http://[::1"])
    | hostile_text,
    "metadata": json_values,
    "priority": json_scalars,
    "deadline_seconds": json_scalars,
}
specs = st.fixed_dictionaries({}, optional=spec_fields) | st.builds(
    lambda field, value: flux_spec(**{field: value}),
    st.sampled_from(sorted(spec_fields)),
    json_values,
)
batches = st.fixed_dictionaries(
    {"jobs": st.lists(specs, max_size=3)},
    optional={
        "defaults": specs,
        "webhook_url": hostile_text,
        "metadata": json_values,
        "max_points": json_scalars,
    },
)
bodies = st.one_of(
    specs.map(json.dumps),
    batches.map(json.dumps),
    json_values.map(json.dumps),
    st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")),
    st.integers(1, 3000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(4000, 6000).map(lambda digits: '{"metadata": {"n": ' + "9" * digits + "}}"),
    st.sampled_from(
        ['{"jobs": [{"model": "flux-2-pro", "prompt": "x", "metadata": {"f": 1e308}}]}']
    ),
)


@dataclass
class Target:
    clients: ApiClients
    endpoints: list[Endpoint]
    real: dict[str, str]
    auth: dict[str, dict[str, str]]


@pytest.fixture
def target(pg_url: str, settings_for: Callable[..., Settings]) -> Iterator[Target]:
    database = Database(pg_url)
    app = create_app(settings_for(pg_url), database)
    with api_clients(app, database) as clients:
        tenant = clients.new("tenant")
        ops = clients.new("ops", admin=True)
        job = tenant.post("/v1/jobs", json=flux_spec()).json()["id"]
        batch = tenant.post("/v1/batches", json={"jobs": [flux_spec()]}).json()["id"]
        owner = make_key(database)
        finished = finish_job(database, owner, "https://hooks.example.com/h")
        login = clients.call(
            "POST",
            "/dashboard/login",
            content=f"api_key={ops.key.api_key}",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        cookie = login.headers["set-cookie"].split(";")[0]
        yield Target(
            clients=clients,
            endpoints=_endpoints(app),
            real={"job": job, "batch": batch, "delivery": finished.delivery_id},
            auth={
                "tenant": {"Authorization": f"Bearer {tenant.key.api_key}"},
                "admin": {"Authorization": f"Bearer {ops.key.api_key}", "Cookie": cookie},
                "owner": {"Authorization": f"Bearer {owner.api_key}"},
                "none": {},
                "garbage": {
                    "Authorization": "Bearer mcj_not-a-key",
                    "Cookie": "mcjobs_dashboard=x",
                },
            },
        )
    database.dispose()


def _fill_path(draw: st.DrawFn, target: Target, template: str) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        real = [value for kind, value in target.real.items() if name.startswith(kind)]
        value = draw(st.sampled_from(real) | ids if real else ids)
        return quote(value, safe="")

    return _PATH_PARAM.sub(one, template)


@st.composite
def requests(draw: st.DrawFn, target: Target) -> tuple[str, str, dict[str, Any]]:
    endpoint = draw(st.sampled_from(target.endpoints))
    path = _fill_path(draw, target, endpoint.path)
    names = st.sampled_from(endpoint.query_names) if endpoint.query_names else st.nothing()
    params = draw(
        st.lists(
            st.tuples(names | st.sampled_from(["stauts", "cursor", "\x00", "limit"]), query_values),
            max_size=4,
        )
    )
    headers = dict(draw(st.sampled_from(sorted(target.auth.values(), key=str))))
    if draw(st.booleans()):
        headers["Idempotency-Key"] = draw(st.text(alphabet="abcxyz-_ 09", max_size=8))
    kwargs: dict[str, Any] = {"params": params, "headers": headers}
    if endpoint.method in ("POST", "PUT", "PATCH"):
        kwargs["content"] = draw(bodies).encode("utf-8", "surrogatepass")
        headers["Content-Type"] = draw(
            st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain"])
        )
    return endpoint.method, path, kwargs


def test_the_fuzzer_reaches_every_route(target: Target) -> None:
    paths = {endpoint.path for endpoint in target.endpoints}

    assert {"/v1/jobs", "/v1/webhooks/deliveries/{delivery_id}/redeliver", "/v1/stats"} <= paths
    assert {"/dashboard", "/dashboard/jobs/{job_id}", "/metrics", "/readyz"} <= paths


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
def test_no_request_gets_a_server_error(target: Target, data: st.DataObject) -> None:
    method, path, kwargs = data.draw(requests(target), label="request")

    response: httpx.Response = target.clients.call(method, path, **kwargs)

    not_ready = path == "/readyz" and response.status_code == 503  # its answer when a check lags
    assert response.status_code < 500 or not_ready, (method, path, kwargs, response.text[:500])
