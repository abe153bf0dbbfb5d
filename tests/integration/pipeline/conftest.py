"""Pipeline tests use a private Redis (see tests/support/pipeline_redis.py)."""

from tests.support.pipeline_redis import pipeline_redis_server, redis_url

__all__ = ["pipeline_redis_server", "redis_url"]
