"""The reference's configuration, from ``REF_*`` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import sessionmaker

DATABASE_URL = os.environ.get("REF_DATABASE_URL", "")
BROKER_URL = os.environ.get("REF_BROKER_URL", "redis://127.0.0.1:6379/0")
METACHAT_BASE_URL = os.environ.get("REF_METACHAT_BASE_URL", "http://127.0.0.1:8090/open/v1")
METACHAT_API_KEY = os.environ.get("REF_METACHAT_API_KEY", "sim-bench-key")
FIRST_POLL_SECONDS = float(os.environ.get("REF_FIRST_POLL_SECONDS", "0.25"))
MAX_POLL_SECONDS = float(os.environ.get("REF_MAX_POLL_SECONDS", "10"))
QUEUE = "ref"


@lru_cache(maxsize=1)
def engine() -> Engine:
    """One engine per process (made lazily, so after the prefork pool has forked)."""
    return create_engine(DATABASE_URL, pool_size=5, pool_pre_ping=True)


@lru_cache(maxsize=1)
def session_factory() -> sessionmaker:  # type: ignore[type-arg]
    return sessionmaker(engine(), expire_on_commit=False)


def paths_for(model: str) -> tuple[str, str]:
    """(submit path, result path with ``{id}``) of a model, as the tutorial hard-codes them."""
    if model.startswith(("mj-", "niji-")):
        return "midjourney/imagine", "midjourney/result/{id}"
    if "video" in model:
        return "video/generate", "video/result/{id}"
    return "image/generate", "image/result/{id}"
