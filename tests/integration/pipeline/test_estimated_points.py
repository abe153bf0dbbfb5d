"""`estimated_points` is what docs/api.md says from the moment a job is accepted: the catalogue
price of its model and action when the operator configured one, else null, and it never changes
afterwards. Budgets hold exactly that estimate; an unpriced job is held at its model's average
cost without the job's own field changing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from core.db import Database
from core.settings import Settings
from core.submission import JobSpec, create_job, get_catalogue
from core.tables import RUNNING, SUCCEEDED, utcnow
from core.transitions import transition
from tests.support import pipeline_upstream as up
from tests.support.pipeline_jobs import job, new_api_key, pipeline_settings, pump_context
from worker.submit import run_submit_pump

SettingsFor = Callable[..., Settings]


def _accept(db: Database, settings: Settings, key: str, model: str = "flux-2-pro") -> str:
    with db.session() as session:
        return create_job(
            session,
            get_catalogue(settings.metachat_catalogue_overrides),
            JobSpec(model=model, prompt=f"a mug #{utcnow().timestamp()}"),
            api_key_id=key,
            owner_id=None,
            webhook_verdicts={},  # no webhook URL: nothing to check
            now=utcnow(),
        ).id


def _submit(db: Database, settings: Settings) -> None:
    async def main() -> None:
        recorder = up.Recorder(up.submitted())
        async with pump_context(db, settings, transport=recorder.transport) as ctx:
            await run_submit_pump(ctx)

    asyncio.run(main())


def _finish(db: Database, job_id: str, cost: int) -> None:
    with db.session() as session:
        transition(
            session,
            job_id,
            from_status=RUNNING,
            to_status=SUCCEEDED,
            reason="upstream_succeeded",
            values={"cost_points": cost},
        )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [({}, None), ({"prices": {"flux-2-pro": 7}}, 7)],
    ids=["no-price-null", "catalogue-price"],
)
def test_estimated_points_is_set_at_accept_and_never_rewritten(
    db: Database,
    settings_for: SettingsFor,
    db_url: str,
    overrides: dict[str, Any],
    expected: int | None,
) -> None:
    settings = pipeline_settings(settings_for, db_url, metachat_catalogue_overrides=overrides)
    key = new_api_key(db)
    earlier = _accept(db, settings, key)
    _submit(db, settings)
    _finish(db, earlier, 30)
    job_id = _accept(db, settings, key)
    assert job(db, job_id).estimated_points == expected
    _submit(db, settings)
    row = job(db, job_id)
    assert (row.status, row.estimated_points) == (RUNNING, expected)
    # the budget holds the same estimate; without a price, the model's average cost so far
    assert row.points_held == (30 if expected is None else expected)
    _finish(db, job_id, 12)
    assert job(db, job_id).estimated_points == expected
