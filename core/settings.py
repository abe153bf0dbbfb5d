"""Service configuration, read from the environment (and an optional `.env` file).

Every name here is documented in `docs/configuration.md`. Defaults make `make run` work with
nothing configured: SQLite under `var/`, Redis on localhost, the simulator when no MetaChat
key is set.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_METACHAT_BASE_URL = "https://api.mmchat.xyz/open/v1"
DEFAULT_LLM_BASE_URL = "https://llm-api.mmchat.xyz/v1"  # backup: https://llm-api.mmchat.dev/v1

# Standard Webhooks recommends retrying over about a day; these are the gaps between attempts.
DEFAULT_WEBHOOK_SCHEDULE = (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)


class Settings(BaseSettings):
    """All configuration of MetaChat Jobs. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=False
    )

    # storage and broker
    database_url: str = "sqlite:///var/mcjobs.sqlite3"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Celery's broker (ticks and nudges); empty means REDIS_URL, which then carries both
    broker_url: str = ""
    sqlite_busy_timeout_ms: int = Field(default=30_000, ge=0)
    db_pool_size: int = Field(default=5, ge=1)
    # off behind a transaction-pooling PgBouncer older than 1.21 (docs/scaling.md)
    db_prepared_statements: bool = True

    # upstream
    metachat_base_url: str = DEFAULT_METACHAT_BASE_URL
    metachat_api_key: SecretStr | None = None
    metachat_app_id: SecretStr | None = None
    metachat_connect_timeout: float = Field(default=5.0, gt=0)
    metachat_read_timeout: float = Field(default=30.0, gt=0)
    metachat_max_connections: int = Field(default=50, ge=1)
    # the OpenAI-compatible host (GPT Image, Gemini image, Imagen, chat): same key; each call is
    # one long synchronous request with its own read timeout and its own cap per worker process
    metachat_llm_base_url: str = DEFAULT_LLM_BASE_URL
    metachat_sync_read_timeout: float = Field(default=180.0, gt=0)
    metachat_sync_max_in_flight: int = Field(default=8, ge=1)
    # JSON overrides of what no source confirms: paths, prices, durations (docs/upstream.md)
    metachat_catalogue_overrides: dict[str, Any] = Field(default_factory=dict)

    # pipeline
    poll_time_scale: float = Field(default=1.0, gt=0)
    resubmit_on_uncertain: bool = False
    submit_batch_size: int = Field(default=200, ge=1)
    poll_batch_size: int = Field(default=500, ge=1)
    lease_seconds: float = Field(default=60.0, gt=0)
    submit_max_attempts: int = Field(default=6, ge=1)
    # per provider: requests per second and tasks in flight upstream, shared by every worker (Redis)
    provider_rate_per_second: dict[str, float] = Field(default_factory=lambda: {"default": 10.0})
    provider_max_in_flight: dict[str, int] = Field(default_factory=lambda: {"default": 200})
    # per provider or model: JSON overrides of the poll schedule, see docs/configuration.md
    poll_schedules: dict[str, dict[str, float]] = Field(default_factory=dict)
    retention_days: float = Field(default=30.0, gt=0)
    # seconds of pruning per maintenance pass (chunk by chunk; docs/operations.md, Retention)
    prune_budget_seconds: float = Field(default=2.0, gt=0)
    beat_interval_seconds: float = Field(default=1.0, gt=0)

    # webhooks
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_schedule_seconds: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE
    webhook_time_scale: float = Field(default=1.0, gt=0)
    deliver_batch_size: int = Field(default=100, ge=1)
    # after a rotation, deliveries are signed with the old secret too for this long
    webhook_secret_overlap_hours: float = Field(default=24.0, ge=0)

    # result storage (docs/configuration.md, "Result storage")
    # unset or a path: files on the local disk (var/files); s3://bucket/prefix: an S3 store
    storage_url: str = "var/files"
    storage_s3_endpoint: str | None = None
    storage_s3_region: str | None = None
    storage_s3_access_key_id: SecretStr | None = None
    storage_s3_secret_access_key: SecretStr | None = None
    storage_connect_timeout: float = Field(default=5.0, gt=0)
    storage_timeout: float = Field(default=120.0, gt=0)
    # how long a presigned S3 link from GET /v1/files/{id} stays valid
    storage_presign_seconds: float = Field(default=900.0, gt=0, le=7 * 86400)
    # the API's address as clients reach it: the stable file URLs in results and webhooks
    public_base_url: str | None = None
    archive_enabled: bool = True
    # result URLs that resolve to loopback, private or link-local addresses are refused unless
    # this is set (development and tests, where the simulator serves files on 127.0.0.1)
    archive_allow_private: bool = False
    archive_batch_size: int = Field(default=50, ge=1)
    archive_concurrency: int = Field(default=8, ge=1)
    archive_max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    archive_max_attempts: int = Field(default=6, ge=1)
    archive_timeout_seconds: float = Field(default=120.0, gt=0)
    archive_content_types: tuple[str, ...] = ("image/", "video/")
    # hold a succeeded job's webhook until its outputs are copied (or given up on), at most
    # this long; 0 sends it at once with the upstream URLs only
    archive_webhook_wait_seconds: float = Field(default=60.0, ge=0)
    # gaps between a failed copy and the next try
    archive_retry_seconds: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 1800.0)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    max_batch_jobs: int = Field(default=10_000, ge=1)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0)
    max_request_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_header_bytes: int = Field(default=64 * 1024, ge=4096)
    metrics_cache_seconds: float = Field(default=10.0, ge=0)
    # when set, /metrics answers only `Authorization: Bearer <this>`
    metrics_token: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres_driver(cls, value: str) -> str:
        # psycopg 3 is the one PostgreSQL driver we ship; accept the common spellings.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @field_validator("metrics_token")
    @classmethod
    def _empty_token_is_none(cls, value: SecretStr | None) -> SecretStr | None:
        # an empty token would be "set" yet match an empty bearer: read it as not set
        return value if value is not None and value.get_secret_value().strip() else None

    @model_validator(mode="after")
    def _broker_defaults_to_redis(self) -> Settings:
        if not self.broker_url.strip():
            self.broker_url = self.redis_url
        return self

    @property
    def file_base_url(self) -> str:
        """Where clients fetch archived files: ``PUBLIC_BASE_URL`` or the API's own address."""
        base = self.public_base_url or f"http://{self.api_host}:{self.api_port}"
        return base.rstrip("/")

    @property
    def uses_simulator(self) -> bool:
        return self.metachat_api_key is None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests build their own `Settings(...)` instead."""
    return Settings()
