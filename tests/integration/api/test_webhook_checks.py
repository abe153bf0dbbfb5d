"""Submit-time webhook checks: one DNS lookup per host (not per job), done before the accepting
transaction opens and off the event loop, and a refusal that never says what a name resolves to.
DNS is faked through `socket.getaddrinfo` (tests/support/webhook_dns.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.db import Database
from core.tables import Job
from tests.support.api_client import ApiClient, ApiClients
from tests.support.api_data import count, flux_spec
from tests.support.webhook_dns import fake_dns

PUBLIC = "93.184.216.34"


@dataclass
class LookupWitness:
    """Answers for a fake DNS name, noting at each lookup whether a write transaction was open
    in the database and whether the lookup ran on an event loop's thread."""

    db: Database
    addresses: Sequence[str] = (PUBLIC,)
    inside_transaction: list[bool] = field(default_factory=list)
    on_event_loop: list[bool] = field(default_factory=list)
    # lookups of several hosts run at once; their probes must not see each other
    _probing: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self) -> Sequence[str]:
        with self._probing:
            self.inside_transaction.append(_write_transaction_open(self.db))
        try:
            asyncio.get_running_loop()
            self.on_event_loop.append(True)
        except RuntimeError:
            self.on_event_loop.append(False)
        return self.addresses


def _write_transaction_open(db: Database) -> bool:
    url = make_url(db.url)
    if db.sqlite:
        probe = sqlite3.connect(str(url.database), timeout=0, isolation_level=None)
        try:
            probe.execute("BEGIN IMMEDIATE")
            probe.execute("ROLLBACK")
            return False
        except sqlite3.OperationalError:  # "database is locked": someone holds the write lock
            return True
        finally:
            probe.close()
    engine = create_engine(db.url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        open_elsewhere = connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        ).scalar_one()
    engine.dispose()
    return bool(open_elsewhere)


@pytest.fixture
def strict(clients_with: Callable[..., ApiClients]) -> ApiClient:
    """A client of an app that checks webhook destinations for real."""
    return clients_with(webhook_allow_private=False).new("strict")


def test_a_thousand_job_batch_at_one_host_costs_one_lookup_outside_the_transaction(
    strict: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = LookupWitness(db)
    looked_up = fake_dns(monkeypatch, {"hooks.example.com": witness})
    specs = [flux_spec(n, webhook_url=f"https://hooks.example.com/job/{n}") for n in range(1000)]
    body = {"jobs": specs, "webhook_url": "https://hooks.example.com/batch"}

    response = strict.post("/v1/batches", json=body, headers={"Idempotency-Key": "one-host"})

    assert response.status_code == 202, response.text[:500]
    assert count(db, Job) == 1000
    assert looked_up == ["hooks.example.com"]
    assert witness.inside_transaction == [False]
    assert witness.on_event_loop == [False]


def test_a_lookup_is_reused_by_the_next_request(
    strict: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = fake_dns(monkeypatch, {"hooks.example.com": [PUBLIC]})

    for n in range(3):
        spec = flux_spec(n, webhook_url="https://hooks.example.com/cb")
        assert strict.post("/v1/jobs", json=spec).status_code == 202

    assert looked_up == ["hooks.example.com"]


def test_each_distinct_host_is_looked_up_once_before_the_transaction(
    strict: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = LookupWitness(db)
    hosts = [f"h{n}.example.com" for n in range(3)]
    looked_up = fake_dns(monkeypatch, dict.fromkeys(hosts, witness))
    specs = [flux_spec(n, webhook_url=f"https://{hosts[n % 3]}/{n}") for n in range(30)]

    response = strict.post("/v1/batches", json={"jobs": specs}, headers={"Idempotency-Key": "k"})

    assert response.status_code == 202
    assert sorted(looked_up) == hosts
    assert witness.inside_transaction == [False, False, False]
    assert witness.on_event_loop == [False, False, False]


def test_a_single_job_is_checked_before_the_transaction_too(
    strict: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    witness = LookupWitness(db)
    fake_dns(monkeypatch, {"hooks.example.com": witness})

    response = strict.post(
        "/v1/jobs",
        json=flux_spec(webhook_url="https://hooks.example.com/cb"),
        headers={"Idempotency-Key": "single"},
    )

    assert response.status_code == 202
    assert witness.inside_transaction == [False]


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "127.0.0.1", "169.254.169.254", "::ffff:10.0.0.1", "fd00:ec2::254"],
)
def test_a_refused_name_does_not_say_what_it_resolves_to(
    strict: ApiClient, db: Database, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    fake_dns(monkeypatch, {"billing.internal.example": [address]})

    response = strict.post(
        "/v1/jobs", json=flux_spec(webhook_url="https://billing.internal.example/hook")
    )

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["loc"] == ["webhook_url"]
    assert "resolves to a private address" in error["msg"]
    for revealing in (address, "loopback", "metadata", "link-local", "inside"):
        assert revealing not in response.text
    assert count(db, Job) == 0


def test_a_batch_names_every_job_whose_host_is_private(
    strict: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_up = fake_dns(
        monkeypatch, {"ok.example.com": [PUBLIC], "internal.example.com": ["10.0.0.9"]}
    )
    specs = [
        flux_spec(0, webhook_url="https://ok.example.com/a"),
        flux_spec(1, webhook_url="https://internal.example.com/b"),
        flux_spec(2, webhook_url="https://internal.example.com/c"),
    ]

    response = strict.post("/v1/batches", json={"jobs": specs})

    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["jobs", 1, "webhook_url"],
        ["jobs", 2, "webhook_url"],
    ]
    assert sorted(looked_up) == ["internal.example.com", "ok.example.com"]
    assert "10.0.0.9" not in response.text
