"""Every ``error.code`` a job can end with, named in one place.

docs/api.md lists each of them in its error code table; a test compares that table with this
module and with every ``error_code`` the code writes.
"""

from __future__ import annotations

from core.budget import BUDGET_EXCEEDED
from core.cancel import ERROR_CODE as CANCELLED
from core.maintenance import DEADLINE_EXCEEDED, SUBMIT_UNCERTAIN

UPSTREAM_REJECTED = "upstream_rejected"
UPSTREAM_QUOTA_EXCEEDED = "upstream_quota_exceeded"
UPSTREAM_UNAVAILABLE = "upstream_unavailable"
UPSTREAM_FAILED = "upstream_failed"
INVALID_UPSTREAM_RESPONSE = "invalid_upstream_response"
SOURCE_FAILED = "source_failed"
INVALID_JOB = "invalid_job"
RESULT_NOT_STORED = "result_not_stored"

__all__ = [
    "BUDGET_EXCEEDED",
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "INVALID_JOB",
    "INVALID_UPSTREAM_RESPONSE",
    "RESULT_NOT_STORED",
    "SOURCE_FAILED",
    "SUBMIT_UNCERTAIN",
    "UPSTREAM_FAILED",
    "UPSTREAM_QUOTA_EXCEEDED",
    "UPSTREAM_REJECTED",
    "UPSTREAM_UNAVAILABLE",
]
