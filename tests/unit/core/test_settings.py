from __future__ import annotations

import pytest

from core.settings import DEFAULT_METACHAT_BASE_URL, Settings


def test_defaults_need_nothing_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "METACHAT_API_KEY", "METACHAT_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url.startswith("sqlite:///")
    assert settings.metachat_base_url == DEFAULT_METACHAT_BASE_URL
    assert settings.uses_simulator
    assert settings.poll_time_scale == 1.0
    assert settings.webhook_allow_private is False


def test_environment_names_match_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("WEBHOOK_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("POLL_TIME_SCALE", "0.01")
    monkeypatch.setenv("METACHAT_API_KEY", "sk-secret-value")
    monkeypatch.setenv("PROVIDER_RATE_PER_SECOND", '{"midjourney": 2}')
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.webhook_allow_private is True
    assert settings.poll_time_scale == 0.01
    assert settings.provider_rate_per_second == {"midjourney": 2}
    assert "sk-secret-value" not in repr(settings)
    assert "sk-secret-value" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("environment", "broker"),
    [
        ({}, "redis://r:6379/2"),
        ({"BROKER_URL": ""}, "redis://r:6379/2"),
        ({"BROKER_URL": "amqp://u:p@mq:5672/v"}, "amqp://u:p@mq:5672/v"),
    ],
    ids=["unset", "empty", "rabbitmq"],
)
def test_the_broker_defaults_to_redis(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], broker: str
) -> None:
    monkeypatch.delenv("BROKER_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://r:6379/2")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.broker_url == broker
    assert settings.redis_url == "redis://r:6379/2"


def test_prepared_statements_can_be_turned_off_for_a_transaction_pooler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert Settings(_env_file=None).db_prepared_statements is True  # type: ignore[call-arg]
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "false")
    assert Settings(_env_file=None).db_prepared_statements is False  # type: ignore[call-arg]
