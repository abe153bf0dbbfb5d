"""Everything the simulator can be told: timing, prices, auth, limits and injected faults.

A config is immutable; the admin route replaces it with a patched copy (:meth:`SimConfig.patched`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from sim.catalogue import DEFAULT_ACTION_POINTS, DEFAULT_DURATIONS, DEFAULT_MODEL_POINTS

Rate = Field(default=0.0, ge=0.0, le=1.0)

DEFAULT_LLM_MODELS = (
    "gpt-image-1.5",
    "gpt-image-1",
    "gemini-2.5-flash-image",
    "gemini-3-pro-image-preview",
    "imagen-4.0-generate-001",
    "imagen-4.0-ultra-generate-001",
    "gpt-5",
    "gpt-4.1",
    "gpt-4o-mini",
    "claude-sonnet-4-5",
    "gemini-2.5-pro",
    "gemini-2.5-flash",
    "deepseek-chat",
    "grok-4",
    "qwen3-max",
    "kimi-k2",
    "glm-4.6",
)


class SimConfig(BaseModel):
    """How the simulated MetaChat behaves. Every field has a realistic default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    # Timing: each task's duration is lognormal around its class median, times time_scale.
    time_scale: float = Field(default=1.0, ge=0.0)
    instant: bool = False
    durations: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_DURATIONS))
    duration_sigma: float = Field(default=0.25, ge=0.0, le=2.0)
    queue_fraction: float = Field(default=0.15, ge=0.0, lt=1.0)
    # Outcomes and money.
    fail_rate: float = Rate
    fail_marker: str = "sim:fail"
    reject_marker: str = "sim:reject"
    points: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_MODEL_POINTS))
    action_points: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_ACTION_POINTS))
    starting_balance: int = 1_000_000_000
    numeric_status: bool = False
    strict_params: bool = True
    strict_sources: bool = True
    # Submit bodies above this many bytes answer 413 (inline images too large); None: no limit.
    max_body_bytes: int | None = Field(default=None, ge=1)
    # Which era of the API: FLUX on its own flux/generate + flux/result paths (image/generate
    # then refuses FLUX models), whether video/result also answers for Midjourney clips, and
    # whether a FLUX submit without params.mode is refused.
    legacy_flux_paths: bool = False
    mj_video_on_video_result: bool = True
    flux_mode_required: bool = False
    # Auth: any non-empty Bearer key unless api_key is set.
    api_key: SecretStr | None = None
    require_app_id: bool = False
    app_id: SecretStr | None = None
    # Every authenticated request answers 403 permission_error (an expired or disabled key).
    key_disabled: bool = False
    # Token bucket over all authenticated /open/v1 requests; 0 = unlimited.
    rate_limit_rps: float = Field(default=0.0, ge=0.0)
    rate_limit_burst: int | None = Field(default=None, ge=1)
    # Injected faults: one uniform draw per targeted request picks at most one of them.
    error_5xx_rate: float = Rate
    rate_429_rate: float = Rate
    retry_after_seconds: int = Field(default=1, ge=0)
    slow_rate: float = Rate
    slow_seconds: float = Field(default=2.0, ge=0.0)
    read_timeout_rate: float = Rate
    # Longer than the service's default 30 s read timeout, so a hung submit times the client out.
    hang_seconds: float = Field(default=45.0, ge=0.0)
    malformed_rate: float = Rate
    fault_on_submit: bool = True
    fault_on_poll: bool = True
    # Where things live.
    base_path: str = "/open/v1"
    balance_path: str = "account/balance"
    usage_path: str = "account/usage"
    public_base_url: str | None = None
    url_ttl_seconds: float | None = Field(default=None, gt=0.0)
    # The OpenAI-compatible host: served under llm_base_path, answering after a lognormal
    # latency around these medians (seconds, times time_scale); PNGs are this many pixels a side.
    llm_base_path: str = "/v1"
    llm_models: list[str] = Field(default_factory=lambda: list(DEFAULT_LLM_MODELS))
    llm_durations: dict[str, float] = Field(
        default_factory=lambda: {"image": 30.0, "edit": 40.0, "chat": 4.0}
    )
    llm_png_side: int = Field(default=64, ge=1, le=4096)

    @classmethod
    def for_profile(cls, profile: str = "realistic", **overrides: Any) -> SimConfig:
        """A config for a named profile (see :data:`PROFILES`) with ``overrides`` on top."""
        try:
            base = PROFILES[profile]
        except KeyError:
            known = ", ".join(sorted(PROFILES))
            raise ValueError(f"unknown simulator profile {profile!r}; known: {known}") from None
        return cls.model_validate({**base, **overrides})

    def patched(self, changes: Mapping[str, Any]) -> SimConfig:
        """A validated copy with ``changes`` applied (unknown keys are refused)."""
        current = self.model_dump()
        for name in ("api_key", "app_id"):
            secret = getattr(self, name)
            current[name] = secret.get_secret_value() if secret is not None else None
        return type(self).model_validate({**current, **changes})

    def public_view(self) -> dict[str, Any]:
        """The config as JSON, secrets masked."""
        view = self.model_dump(mode="json")
        for name in ("api_key", "app_id"):
            view[name] = None if getattr(self, name) is None else "***"
        return view


#: Named starting points for ``mcjobs sim --profile``.
PROFILES: Mapping[str, Mapping[str, Any]] = {
    "realistic": {},
    "default": {},
    "fast": {"time_scale": 0.02},
    "instant": {"instant": True},
    # The older paths and rules, so every catalogue override and client fallback can be tried.
    "legacy": {
        "time_scale": 0.02,
        "legacy_flux_paths": True,
        "mj_video_on_video_result": False,
        "flux_mode_required": True,
    },
    "forbidden": {"time_scale": 0.02, "key_disabled": True},
    "flaky": {
        "time_scale": 0.02,
        "fail_rate": 0.05,
        "error_5xx_rate": 0.03,
        "rate_429_rate": 0.03,
        "slow_rate": 0.02,
        "slow_seconds": 1.0,
        "malformed_rate": 0.01,
    },
}
