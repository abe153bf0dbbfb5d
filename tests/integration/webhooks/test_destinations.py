"""Where the pump may send: private destinations are refused at send time unless allowed, and
the connection goes to the address that was checked, with the host's name on the wire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from core.db import Database
from core.tables import DELIVERY_DEAD, DELIVERY_PENDING, DELIVERY_SUCCEEDED
from tests.support.webhook_dns import fake_dns
from tests.support.webhook_pump import DeliverPump
from tests.support.webhook_receiver import webhook_receiver
from tests.support.webhook_rows import delivery, finish_job, make_key

PumpFor = Callable[..., DeliverPump]


@pytest.mark.parametrize(
    ("host", "state", "reason"),
    [
        pytest.param("127.0.0.1", DELIVERY_DEAD, "loopback", id="loopback-literal-is-dead"),
        pytest.param(
            "localhost", DELIVERY_PENDING, "resolves to a private address", id="localhost"
        ),
        pytest.param(
            "hooks.example.test",
            DELIVERY_PENDING,
            "resolves to a private address",
            id="name-to-loopback",
        ),
    ],
)
def test_a_private_destination_is_refused_at_send_time_when_the_flag_is_off(
    db: Database,
    pump_for: PumpFor,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
    state: str,
    reason: str,
) -> None:
    fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    key = make_key(db)
    with webhook_receiver() as receiver:
        # written while allowed (e.g. before the operator turned the flag off)
        finished = finish_job(db, key, f"http://{host}:{receiver.port}/hook")
        pump_for(webhook_allow_private=False, webhook_time_scale=1.0).tick()
        assert receiver.count() == 0
    row = delivery(db, finished.delivery_id)
    assert row.state == state
    assert row.last_error is not None and "destination refused" in row.last_error
    assert reason in row.last_error


def test_a_name_is_connected_to_at_its_checked_address_and_keeps_its_host_header(
    db: Database, pump_for: PumpFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = fake_dns(monkeypatch, {"hooks.example.test": ["127.0.0.1"]})
    key = make_key(db)
    with webhook_receiver() as receiver:
        url = f"http://hooks.example.test:{receiver.port}/cb?tenant=7"
        finished = finish_job(db, key, url)
        pump_for().tick()
        [request] = receiver.received
    assert request.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert request.path == "/cb?tenant=7"
    assert looked_up == ["hooks.example.test"]
    assert delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED


def test_a_name_that_stops_resolving_is_retried_rather_than_dropped(
    db: Database, pump_for: PumpFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers: list[list[str]] = [[], ["127.0.0.1"]]
    fake_dns(monkeypatch, {"flaky.example.test": lambda: answers.pop(0)})
    key = make_key(db)
    with webhook_receiver() as receiver:
        finished = finish_job(db, key, f"http://flaky.example.test:{receiver.port}/hook")
        pump_for().run_until(
            lambda: delivery(db, finished.delivery_id).state == DELIVERY_SUCCEEDED,
            what="delivered once the name resolves",
        )
        assert receiver.ids() == [finished.delivery_id]
    assert delivery(db, finished.delivery_id).attempts == 2
