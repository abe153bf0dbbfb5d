"""The upstream seam: everything the service knows about MetaChat lives in this package.

- `build_catalogue` / `Catalogue`: models, actions, params schemas, paths, validation of job specs
  (`SpecError` and its `UnknownModel` / `UnknownAction` carry ``(loc, msg)`` pairs for a 422).
- `MetaChatClient` over one `make_http_client` client: `submit`, `fetch`, `balance`,
  `usage_records`, answering `UpstreamTask` / `UsageRecord` in our vocabulary.
- `UpstreamError` and its subclasses: every way a call can fail, decided by class.

This package imports nothing else of ours.
"""

from metachat.catalogue import Catalogue, CatalogueOverrides, build_catalogue
from metachat.client import MetaChatClient, make_http_client
from metachat.errors import (
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamError,
    UpstreamInvalidResponse,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUncertain,
    UpstreamUnknownModel,
    parse_retry_after,
)
from metachat.normalise import task_status
from metachat.specs import (
    PROVIDERS,
    ActionSpec,
    Family,
    ImageRule,
    ModelSpec,
    PromptRule,
    Provider,
    ResultField,
    SourceRule,
    ValidatedSpec,
)
from metachat.tasks import (
    TERMINAL_STATUSES,
    SubmitRequest,
    TaskStatus,
    UpstreamTask,
    UsageRecord,
)
from metachat.validation import SpecError, UnknownAction, UnknownModel

__all__ = [
    "PROVIDERS",
    "TERMINAL_STATUSES",
    "ActionSpec",
    "Catalogue",
    "CatalogueOverrides",
    "Family",
    "ImageRule",
    "MetaChatClient",
    "ModelSpec",
    "PromptRule",
    "Provider",
    "ResultField",
    "SourceRule",
    "SpecError",
    "SubmitRequest",
    "TaskStatus",
    "UnknownAction",
    "UnknownModel",
    "UpstreamAuthError",
    "UpstreamEndpointMissing",
    "UpstreamError",
    "UpstreamInvalidResponse",
    "UpstreamQuotaExceeded",
    "UpstreamRateLimited",
    "UpstreamRejected",
    "UpstreamTask",
    "UpstreamTaskNotFound",
    "UpstreamTransient",
    "UpstreamUncertain",
    "UpstreamUnknownModel",
    "UsageRecord",
    "ValidatedSpec",
    "build_catalogue",
    "make_http_client",
    "parse_retry_after",
    "task_status",
]
