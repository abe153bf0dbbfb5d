"""What a free probe sends, and what MetaChat's answer to it says about the path.

A probe is a request MetaChat must refuse or answer without creating a task: a submit whose
body cannot be carried out (an empty prompt, no first frame, a source task that does not
exist), a result call for a task id no task has, or a read of the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from metachat._defaults import MODELS
from metachat.bodies import submit_body
from metachat.client import MetaChatClient
from metachat.errors import (
    UpstreamAuthError,
    UpstreamEndpointMissing,
    UpstreamError,
    UpstreamQuotaExceeded,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTaskNotFound,
    UpstreamTransient,
    UpstreamUncertain,
    UpstreamUnknownModel,
)
from metachat.specs import ActionSpec, ModelSpec, path_with_id
from metachat.tasks import SubmitRequest

PROBE_TASK_ID = "mcjobs-probe-0"
"""A task id no task has: result paths must answer "not found", follow-ups must refuse it."""

REFUSED = "refused the probe: "


class Finding(StrEnum):
    """What one answer says about a path."""

    EXISTS = "exists"
    MISSING = "missing"
    MODEL_REFUSED = "model refused"
    AUTH = "auth problem"
    RATE_LIMITED = "rate limited"
    UNREACHABLE = "unreachable"
    UNEXPECTED = "unexpected answer"
    ACCEPTED = "accepted"


@dataclass(frozen=True)
class Probe:
    """One free request: where it goes, what it carries, and which catalogue entries use it."""

    kind: str  # "submit", "result", "account", "alternative", "mode", "llm-submit", "llm-models"
    what: str
    method: str
    template: str
    path: str
    model: str | None = None
    body: dict[str, Any] | None = None
    query: dict[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """What MetaChat said to one probe."""

    probe: Probe
    finding: Finding
    message: str
    http_status: int | None = None
    allowed_models: tuple[str, ...] = ()
    out_of_points: bool = False
    retry_after: float | None = None


def classified(probe: Probe, exc: UpstreamError) -> Answer:
    status = exc.http_status
    if isinstance(exc, UpstreamEndpointMissing):
        return Answer(probe, Finding.MISSING, "404: no such path", status)
    if isinstance(exc, UpstreamUnknownModel):
        allowed = exc.allowed
        return Answer(probe, Finding.MODEL_REFUSED, exc.message, status, allowed_models=allowed)
    if isinstance(exc, UpstreamQuotaExceeded):
        return Answer(probe, Finding.EXISTS, exc.message, status, out_of_points=True)
    if isinstance(exc, UpstreamTaskNotFound):
        return Answer(probe, Finding.EXISTS, f"does not know task {PROBE_TASK_ID}", status)
    if isinstance(exc, UpstreamRejected):
        return Answer(probe, Finding.EXISTS, f"{REFUSED}{exc.message}", status)
    if isinstance(exc, UpstreamAuthError):
        return Answer(probe, Finding.AUTH, f"{status} {exc.kind}: {exc.message}", status)
    if isinstance(exc, UpstreamRateLimited):
        wait = "" if exc.retry_after is None else f" (Retry-After {exc.retry_after:g} s)"
        return Answer(
            probe, Finding.RATE_LIMITED, f"429{wait}", status, retry_after=exc.retry_after
        )
    if isinstance(exc, UpstreamUncertain) or (isinstance(exc, UpstreamTransient) and not exc.sent):
        return Answer(probe, Finding.UNREACHABLE, exc.message, status)
    return Answer(probe, Finding.UNEXPECTED, exc.message, status)


def answered(probe: Probe, data: Any) -> Answer:
    if probe.kind == "llm-models":
        return _models_answer(probe, data)
    if probe.kind in ("submit", "alternative", "mode", "llm-submit"):
        task = data.get("id") if isinstance(data, dict) else None
        named = f" (task {task})" if task else ""
        return Answer(probe, Finding.ACCEPTED, f"accepted the probe{named}: it may be charged")
    if probe.kind == "result":
        return Answer(probe, Finding.EXISTS, f"answered for task {PROBE_TASK_ID}")
    if isinstance(data, dict) and "balance" in data:
        return Answer(probe, Finding.EXISTS, f"balance: {data['balance']} points")
    return Answer(probe, Finding.EXISTS, "records readable")


# --- what to send ----------------------------------------------------------------------------

ENDPOINTS = {
    (template.id, action.name): action for template in MODELS for action in template.actions
}


def probe_body(model: ModelSpec, action: ActionSpec) -> dict[str, Any] | None:
    """The submit body for ``action`` that MetaChat must refuse, or None when there is none.

    A follow-up names a source task that does not exist; an action that needs a prompt gets an
    empty one; one that needs images gets none. Everything else is what a job would send
    (default params included), so the refusal is about the probe, not the shape.
    """
    if action.body == "follow_up":
        request = SubmitRequest(
            model.id,
            action.name,
            params=_follow_up_params(action),
            source_task_id=PROBE_TASK_ID,
            source_index=1 if action.needs_index else None,
        )
        return submit_body(action, request)
    if action.prompt.required:
        return submit_body(action, SubmitRequest(model.id, action.name, prompt=""))
    if action.images.min_count > 0:
        return {**submit_body(action, SubmitRequest(model.id, action.name)), "images": []}
    return None


def _follow_up_params(action: ActionSpec) -> dict[str, Any]:
    """Valid params, so the only fault is the source: the defaults, plus a value for each param
    that has none (pan's direction)."""
    schema = action.params_model.model_json_schema()
    examples: dict[str, Any] = {}
    for name in schema.get("required", []):
        choices = schema.get("properties", {}).get(name, {}).get("enum")
        if choices:
            examples[name] = choices[0]
    params = action.params_model.model_validate(examples)
    dumped: dict[str, Any] = params.model_dump(mode="json", exclude_none=True)
    return dumped


def submit_probes(client: MetaChatClient) -> list[Probe]:
    probes: list[Probe] = []
    seen: set[tuple[str, str | None]] = set()
    for model in client.catalogue.models:
        for action in model.actions.values():
            if action.sync:
                continue
            body = probe_body(model, action)
            if body is None:
                continue
            carried = model.id if "model" in body else None
            if (action.submit_path, carried) in seen:
                continue
            seen.add((action.submit_path, carried))
            label = ENDPOINTS[(model.id, action.name)].endpoint
            probes.append(
                Probe(
                    "submit",
                    label,
                    "POST",
                    action.submit_path,
                    action.submit_path,
                    model=model.id,
                    body=body,
                )
            )
    return probes


def result_probes(client: MetaChatClient) -> list[Probe]:
    labels: dict[str, set[str]] = {}
    for model in client.catalogue.models:
        for action in model.actions.values():
            if action.sync:
                continue
            template = ENDPOINTS[(model.id, action.name)]
            if template.result_endpoint is not None:
                labels.setdefault(action.result_path, set()).add(template.result_endpoint)
            if action.result_fallback_path and template.result_fallback_endpoint:
                fallback = template.result_fallback_endpoint
                labels.setdefault(action.result_fallback_path, set()).add(fallback)
    return [
        Probe("result", ", ".join(sorted(names)), "GET", path, path_with_id(path, PROBE_TASK_ID))
        for path, names in labels.items()
    ]


def account_probes(client: MetaChatClient) -> list[Probe]:
    catalogue = client.catalogue
    return [
        Probe("account", "account.balance", "GET", catalogue.balance_path, catalogue.balance_path),
        Probe(
            "account",
            "account.usage",
            "GET",
            catalogue.usage_path,
            catalogue.usage_path,
            query={"page": 1, "size": 1},
        ),
    ]


# --- the OpenAI-compatible host ----------------------------------------------------------------


def llm_probe_body(model: ModelSpec, action: ActionSpec) -> dict[str, Any]:
    """A body the host must refuse before doing any work: an empty prompt, no messages."""
    if action.body == "openai_chat":
        return {"model": model.id, "messages": []}
    body: dict[str, Any] = {"model": model.id, "prompt": ""}
    if action.body == "openai_edits":
        body["images"] = []
    return body


def llm_probes(client: MetaChatClient) -> list[Probe]:
    """The host's model list, then each synchronous path once per model it serves."""
    catalogue = client.catalogue
    probes = [
        Probe(
            "llm-models",
            "llm.models",
            "GET",
            catalogue.llm_models_path,
            catalogue.llm_models_path,
            body={"ours": sorted(m.id for m in catalogue.models if _is_sync(m))},
        )
    ]
    for model in catalogue.models:
        for action in model.actions.values():
            if not action.sync:
                continue
            probes.append(
                Probe(
                    "llm-submit",
                    f"{model.family} {action.name}",
                    "POST",
                    action.submit_path,
                    action.submit_path,
                    model=model.id,
                    body=llm_probe_body(model, action),
                )
            )
    return probes


def _is_sync(model: ModelSpec) -> bool:
    return any(action.sync for action in model.actions.values())


def _models_answer(probe: Probe, data: Any) -> Answer:
    """``GET models``: which of our synchronous models the host does not list."""
    entries = data.get("data") if isinstance(data, dict) else None
    listed = {str(entry.get("id")) for entry in entries or [] if isinstance(entry, dict)}
    ours = list((probe.body or {}).get("ours", []))
    absent = [model for model in ours if model not in listed]
    if entries is None:
        return Answer(probe, Finding.UNEXPECTED, "the model list has no data[]")
    if absent:
        return Answer(
            probe,
            Finding.MODEL_REFUSED,
            f"lists {len(listed)} models; not {', '.join(absent)}",
            allowed_models=tuple(sorted(listed)),
        )
    return Answer(probe, Finding.EXISTS, f"lists {len(listed)} models, all {len(ours)} of ours")
