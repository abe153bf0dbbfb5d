"""The Celery wiring: expendable ticks on one queue, nothing stored, nothing piled up."""

from __future__ import annotations

from core import nudge
from core.settings import Settings
from worker.celery_app import TICKS, create_celery_app


def settings(**values: object) -> Settings:
    return Settings(_env_file=None, redis_url="redis://127.0.0.1:1/0", **values)  # type: ignore[call-arg]


def test_beat_sends_one_pulse_at_the_configured_interval() -> None:
    app = create_celery_app(settings(beat_interval_seconds=0.5))
    schedule = app.conf.beat_schedule
    assert [entry["task"] for entry in schedule.values()] == [nudge.PULSE_TICK]
    for entry in schedule.values():
        assert entry["schedule"] == 0.5
        assert entry["options"]["queue"] == nudge.TICK_QUEUE
        # a tick that waited longer than this is worthless: the next one is already coming
        assert entry["options"]["expires"] <= 1.0


def test_ticks_store_no_results_and_take_one_message_at_a_time() -> None:
    app = create_celery_app(settings())
    assert app.conf.task_ignore_result is True
    assert app.conf.result_backend is None
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.broker_url == "redis://127.0.0.1:1/0"


def test_every_tick_name_has_a_task_on_the_tick_queue() -> None:
    from worker import tasks
    from worker.celery_app import app

    assert tasks.submit_tick is not None
    for name in TICKS:
        assert name in app.tasks
        assert app.amqp.router.route({}, name)["queue"].name == nudge.TICK_QUEUE


def test_the_broker_is_broker_url_and_redis_url_when_it_is_unset() -> None:
    assert create_celery_app(settings()).conf.broker_url == "redis://127.0.0.1:1/0"
    rabbit = "amqp://guest:guest@127.0.0.1:5672/mcjobs"
    app = create_celery_app(settings(broker_url=rabbit))
    assert app.conf.broker_url == rabbit


def test_ticks_are_transient_on_every_broker() -> None:
    # RabbitMQ would otherwise write every tick to disk; Redis ignores the setting
    app = create_celery_app(settings(broker_url="amqp://guest:guest@127.0.0.1:5672//"))
    assert app.conf.task_default_delivery_mode == "transient"
    assert app.conf.task_acks_late is False
