"""Claiming due deliveries: concurrent pumps never share a row, and leases hand rows back."""

from __future__ import annotations

import datetime as dt
import threading

from core.db import Database
from core.tables import utcnow
from core.webhooks.deliveries import ClaimedDelivery, claim_due_deliveries
from tests.support.webhook_rows import finish_job, make_key

DEAD_URL = "http://127.0.0.1:9/hook"


def test_pumps_claiming_at_the_same_time_never_get_the_same_delivery(db: Database) -> None:
    key = make_key(db)
    made = {finish_job(db, key, DEAD_URL).delivery_id for _ in range(40)}
    start = threading.Barrier(4)
    claimed: dict[str, list[ClaimedDelivery]] = {}

    def pump(owner: str) -> None:
        start.wait()
        got: list[ClaimedDelivery] = []
        for _ in range(5):
            with db.session() as session:
                got += claim_due_deliveries(
                    session, owner=owner, now=utcnow(), lease_seconds=60, limit=3
                )
        claimed[owner] = got

    threads = [threading.Thread(target=pump, args=(f"pump-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    every = [delivery.id for got in claimed.values() for delivery in got]
    assert len(every) == len(set(every)) == 40
    assert set(every) == made


def test_a_claim_carries_the_owning_keys_secret_and_hides_it_from_repr(db: Database) -> None:
    key = make_key(db)
    finished = finish_job(db, key, DEAD_URL)
    with db.session() as session:
        [claimed] = claim_due_deliveries(
            session, owner="pump", now=utcnow(), lease_seconds=60, limit=10
        )
    assert claimed.id == finished.delivery_id
    assert claimed.secrets == (key.webhook_secret,)
    assert key.webhook_secret not in repr(claimed)


def test_a_leased_delivery_is_not_claimed_again_until_its_lease_runs_out(db: Database) -> None:
    key = make_key(db)
    finish_job(db, key, DEAD_URL)
    now = utcnow()
    with db.session() as session:
        assert len(claim_due_deliveries(session, owner="a", now=now, lease_seconds=30, limit=5))
    with db.session() as session:
        assert claim_due_deliveries(session, owner="b", now=now, lease_seconds=30, limit=5) == []
    with db.session() as session:
        again = claim_due_deliveries(
            session, owner="b", now=now + dt.timedelta(seconds=31), lease_seconds=30, limit=5
        )
    assert len(again) == 1
