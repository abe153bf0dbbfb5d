"""Asking MetaChat, at no cost, whether every path the catalogue relies on is really there.

`check_upstream` sends each submit path, per model, a body MetaChat must refuse (an empty
prompt, no first frame, a source task that does not exist), asks each result path about a task
id that does not exist, and reads the two account paths. Each answer is classified: the path
exists (a refusal or "task not found"), is missing (404), refuses our model id (the catalogue
has drifted), or could not be checked (auth, rate limit, unreachable, an unexpected answer).
Where a known alternative exists it is probed too, and the report carries the
``METACHAT_CATALOGUE_OVERRIDES`` that would switch to it. FLUX ``mode`` is probed both ways.

No settings and no printing: `check_upstream` takes a `MetaChatClient` and returns an
`UpstreamReport` (`check_configured` makes the client first).
Nothing it sends can create a task, so nothing is charged; a path that nevertheless accepts a
probe is reported as such (``accepted``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metachat.catalogue import Catalogue
from metachat.client import DEFAULT_LLM_BASE_URL, MetaChatClient, make_http_client
from metachat.errors import UpstreamError
from metachat.probes import (
    PROBE_TASK_ID,
    REFUSED,
    Answer,
    Finding,
    Probe,
    account_probes,
    answered,
    classified,
    llm_probes,
    probe_body,
    result_probes,
    submit_probes,
)
from metachat.specs import Provider, path_with_id

CONCURRENCY = 4
# Generous for one refused request, short enough that the whole check stays within seconds.
PROBE_READ_TIMEOUT = 15.0
MAX_RATE_LIMIT_WAIT = 5.0


# How bad each finding is for a row that groups several answers: the worst one is shown.
_SEVERITY = (
    Finding.ACCEPTED,
    Finding.MISSING,
    Finding.AUTH,
    Finding.MODEL_REFUSED,
    Finding.UNEXPECTED,
    Finding.RATE_LIMITED,
    Finding.UNREACHABLE,
    Finding.EXISTS,
)
_CONFIG_PROBLEMS = frozenset({Finding.MISSING, Finding.MODEL_REFUSED})
_INCONCLUSIVE = frozenset(
    {Finding.RATE_LIMITED, Finding.UNREACHABLE, Finding.UNEXPECTED, Finding.ACCEPTED}
)

EXIT_OK = 0
EXIT_MISCONFIGURED = 1
EXIT_AUTH = 2
EXIT_INCONCLUSIVE = 3


@dataclass(frozen=True)
class Alternative:
    """Paths known to have served a provider before, with where that is known from."""

    provider: Provider
    submit: str
    result: str
    source: str


KNOWN_ALTERNATIVES: tuple[Alternative, ...] = (
    Alternative(
        "flux", "flux/generate", "flux/result/{id}", "the FLUX.1 section of the 2024-25 docs"
    ),
)


@dataclass(frozen=True)
class Row:
    """One line of the report: a path, what it answered, and whether that is a problem."""

    what: str
    method: str
    path: str
    answer: str
    detail: str
    problem: bool = False
    relied_on: bool = True
    finding: Finding | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "method": self.method,
            "path": self.path,
            "answer": self.answer,
            "detail": self.detail,
            "problem": self.problem,
            "relied_on": self.relied_on,
        }


@dataclass
class UpstreamReport:
    """The whole check: rows to print, the overrides to set, hints, and the exit code."""

    base_url: str
    rows: list[Row] = field(default_factory=list)
    suggested: dict[str, dict[str, Any]] = field(default_factory=dict)
    overrides: dict[str, Any] | None = None
    hints: list[str] = field(default_factory=list)
    requests: int = 0
    exit_code: int = EXIT_OK

    def as_json(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "exit_code": self.exit_code,
            "requests": self.requests,
            "rows": [row.as_json() for row in self.rows],
            "suggested": self.suggested,
            "overrides": self.overrides,
            "hints": self.hints,
        }


async def check_upstream(
    client: MetaChatClient, *, overrides: Mapping[str, Any] | None = None
) -> UpstreamReport:
    """Probe every path ``client``'s catalogue relies on; ``overrides`` are the operator's
    current ``METACHAT_CATALOGUE_OVERRIDES``, merged into the suggested ones."""
    run = _Run(client)
    report = UpstreamReport(base_url=client.base_url)
    gate = await run.one(account_probes(client)[0])
    if gate.finding in (Finding.AUTH, Finding.UNREACHABLE):
        report.rows.append(_row_of([gate]))
        report.hints.extend(_hints([gate], client))
        report.exit_code = EXIT_AUTH if gate.finding is Finding.AUTH else EXIT_INCONCLUSIVE
        report.requests = run.requests
        return report

    submits = await run.all(submit_probes(client))
    results = await run.all(result_probes(client))
    account = [gate, *await run.all(account_probes(client)[1:])]
    by_path = _grouped(submits)
    report.rows.extend(_row_of(group) for group in by_path.values())
    report.rows.extend(_row_of([answer]) for answer in results)
    report.rows.extend(_row_of([answer]) for answer in account)
    report.rows.extend(_llm_rows(await run.all(llm_probes(client))))

    _suggest_result_fallbacks(client, results, report)
    working = _working_submit_paths(submits)
    await _try_alternatives(run, client, submits, report, working)
    await _check_modes(run, client, working, report)
    report.rows.extend(_fallback_notes(client))

    report.hints.extend(_hints(run.answers, client))
    if report.suggested:
        report.overrides = _merged(overrides or {}, report.suggested)
    report.exit_code = _exit_code(report.rows)
    report.requests = run.requests
    return report


async def check_configured(
    catalogue: Catalogue,
    *,
    base_url: str,
    api_key: str | None,
    app_id: str | None,
    overrides: Mapping[str, Any] | None = None,
    llm_base_url: str = DEFAULT_LLM_BASE_URL,
    connect_timeout: float = 5.0,
    read_timeout: float = PROBE_READ_TIMEOUT,
) -> UpstreamReport:
    """`check_upstream` on a client of its own (closed afterwards), for callers holding only
    settings: ``mcjobs upstream check`` and the dashboard's upstream page. The read timeout is
    capped at `PROBE_READ_TIMEOUT`."""
    async with make_http_client(
        connect_timeout=connect_timeout, read_timeout=min(read_timeout, PROBE_READ_TIMEOUT)
    ) as http:
        client = MetaChatClient(
            http,
            catalogue,
            base_url=base_url,
            api_key=api_key,
            app_id=app_id,
            llm_base_url=llm_base_url,
        )
        return await check_upstream(client, overrides=overrides)


class _Run:
    """Sends probes a few at a time, counting requests; a 429 is waited out once."""

    def __init__(self, client: MetaChatClient) -> None:
        self.client = client
        self.requests = 0
        self.answers: list[Answer] = []
        self._gate = asyncio.Semaphore(CONCURRENCY)

    async def all(self, probes: Iterable[Probe]) -> list[Answer]:
        return list(await asyncio.gather(*(self.one(probe) for probe in probes)))

    async def one(self, probe: Probe) -> Answer:
        async with self._gate:
            answer = await self._send(probe)
            if answer.finding is Finding.RATE_LIMITED:
                await asyncio.sleep(_wait_for(answer))
                answer = await self._send(probe)
            self.answers.append(answer)
            return answer

    async def _send(self, probe: Probe) -> Answer:
        self.requests += 1
        try:
            if probe.kind.startswith("llm-"):
                body = None if probe.kind == "llm-models" else probe.body
                data: Any = await self.client.llm_call_path(probe.method, probe.path, json=body)
                return answered(probe, data)
            data = await self.client.call_path(
                probe.method,
                probe.path,
                fetching=probe.kind == "result",
                json=probe.body,
                params=probe.query,
            )
        except UpstreamError as exc:
            return classified(probe, exc)
        return answered(probe, data)


def _wait_for(answer: Answer) -> float:
    wanted = 1.0 if answer.retry_after is None else answer.retry_after
    return min(MAX_RATE_LIMIT_WAIT, max(0.5, wanted))


# --- what the answers mean -------------------------------------------------------------------


def _grouped(answers: Sequence[Answer]) -> dict[str, list[Answer]]:
    groups: dict[str, list[Answer]] = {}
    for answer in answers:
        groups.setdefault(answer.probe.template, []).append(answer)
    return groups


def _row_of(answers: Sequence[Answer], *, relied_on: bool = True) -> Row:
    """One row for the answers one path gave (one per model when the body names a model)."""
    worst = min(answers, key=lambda a: _SEVERITY.index(a.finding))
    finding = worst.finding
    probe = worst.probe
    hit = [a.probe.model for a in answers if a.finding is finding and a.probe.model]
    partial = bool(hit) and len(hit) < len(answers) and finding is not Finding.EXISTS
    if finding is Finding.MODEL_REFUSED:
        detail = f"does not serve {', '.join(hit)}"
        if worst.allowed_models:
            detail += f"; MetaChat lists {len(worst.allowed_models)} models there"
    elif finding is Finding.EXISTS:
        plain = [a for a in answers if not a.out_of_points] or list(answers)
        detail = plain[0].message
    else:
        detail = worst.message + (f" (for {', '.join(hit)})" if partial else "")
    answer = "missing (404)" if finding is Finding.MISSING else finding.value
    return Row(
        what=probe.what,
        method=probe.method,
        path=probe.template,
        answer=answer,
        detail=_short(detail),
        problem=relied_on and finding is not Finding.EXISTS,
        relied_on=relied_on,
        finding=finding,
    )


def _llm_rows(answers: Sequence[Answer]) -> list[Row]:
    """The OpenAI-compatible host: its model list (for information: the per-model probes are
    the test) and one row per path and family. A chat model the host does not serve is noted
    without failing the check while others are served: the chat ids are our assumption."""
    rows: list[Row] = []
    groups: dict[tuple[str, str], list[Answer]] = {}
    for answer in answers:
        if answer.probe.kind == "llm-models":
            row = _row_of([answer], relied_on=False)
            rows.append(dataclasses.replace(row, detail=_short(answer.message)))
        else:
            groups.setdefault((answer.probe.template, answer.probe.what), []).append(answer)
    for (_, what), group in groups.items():
        served = [a for a in group if a.finding is Finding.EXISTS]
        refused = [a for a in group if a.finding is Finding.MODEL_REFUSED]
        optional = (
            what.startswith("openai-chat")
            and bool(served)
            and bool(refused)
            and len(served) + len(refused) == len(group)
        )
        rows.append(_row_of(group, relied_on=not optional))
    return rows


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _working_submit_paths(submits: Sequence[Answer]) -> dict[str, str]:
    """Model → a submit path that exists and takes the model (for the mode probes)."""
    return {
        a.probe.model: a.probe.template
        for a in submits
        if a.probe.model and a.finding is Finding.EXISTS and "model" in (a.probe.body or {})
    }


async def _try_alternatives(
    run: _Run,
    client: MetaChatClient,
    submits: Sequence[Answer],
    report: UpstreamReport,
    working: dict[str, str],
) -> None:
    failed = {
        a.probe.model: a
        for a in submits
        if a.probe.model and a.finding in _CONFIG_PROBLEMS and "model" in (a.probe.body or {})
    }
    for alternative in KNOWN_ALTERNATIVES:
        models = [
            client.catalogue.model(m)
            for m in failed
            if client.catalogue.model(m).provider == alternative.provider
        ]
        if not models:
            continue
        label = f"{alternative.provider} alternative"
        submit_answers = await run.all(
            Probe(
                "alternative",
                label,
                "POST",
                alternative.submit,
                alternative.submit,
                model=model.id,
                body=failed[model.id].probe.body,
            )
            for model in models
        )
        result_probe = Probe(
            "result",
            label,
            "GET",
            alternative.result,
            path_with_id(alternative.result, PROBE_TASK_ID),
        )
        result_answer = await run.one(result_probe)
        report.rows.append(_row_of(submit_answers, relied_on=False))
        report.rows.append(_row_of([result_answer], relied_on=False))
        served = [
            a.probe.model
            for a in submit_answers
            if a.finding is Finding.EXISTS and a.probe.model is not None
        ]
        if result_answer.finding is not Finding.EXISTS:
            continue
        paths = report.suggested.setdefault("paths", {})
        for model_id in served:
            for action in client.catalogue.model(model_id).actions.values():
                if action.submit_path == failed[model_id].probe.template:
                    paths[f"{model_id}:{action.name}:submit"] = alternative.submit
                    paths[f"{model_id}:{action.name}:result"] = alternative.result
            working[model_id] = alternative.submit
        if served:
            report.hints.append(
                f"{alternative.provider} answers on {alternative.submit} and "
                f"{alternative.result} ({alternative.source}): the overrides printed switch to them"
            )


def _suggest_result_fallbacks(
    client: MetaChatClient, results: Sequence[Answer], report: UpstreamReport
) -> None:
    """A missing result path whose fallback exists: poll the fallback directly."""
    exists = {a.probe.template for a in results if a.finding is Finding.EXISTS}
    missing = {a.probe.template for a in results if a.finding is Finding.MISSING}
    for model in client.catalogue.models:
        for action in model.actions.values():
            fallback = action.result_fallback_path
            if action.result_path in missing and fallback in exists:
                paths = report.suggested.setdefault("paths", {})
                paths[f"{model.id}:{action.name}:result"] = fallback


def _mode_for(model_id: str) -> str:
    return "max" if model_id.endswith("-max") else "pro"


async def _check_modes(
    run: _Run, client: MetaChatClient, working: Mapping[str, str], report: UpstreamReport
) -> None:
    """FLUX ``mode``: probe with and without it; MetaChat naming it in only one refusal says
    whether it is required or refused there."""
    for model in client.catalogue.models:
        for action in model.actions.values():
            path = working.get(model.id)
            if "mode" not in action.params_model.model_fields or path is None:
                continue
            body = probe_body(model, action) or {}
            params = {k: v for k, v in body.get("params", {}).items() if k != "mode"}
            sent = action.default_params.get("mode")
            with_mode = {**body, "params": {**params, "mode": sent or _mode_for(model.id)}}
            without = {**body, "params": params} if params else _without_params(body)
            what = f"{model.id} params.mode"
            answers = await run.all(
                Probe("mode", what, "POST", path, path, model=model.id, body=variant)
                for variant in (with_mode, without)
            )
            report.rows.append(_mode_row(model.id, what, path, sent, answers, report))


def _without_params(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if key != "params"}


def _names_mode(answer: Answer) -> bool:
    text = answer.message
    return answer.finding is Finding.EXISTS and ("mode" in text.lower() or "'pro' | 'max'" in text)


def _mode_row(
    model_id: str,
    what: str,
    path: str,
    sent: Any,
    answers: Sequence[Answer],
    report: UpstreamReport,
) -> Row:
    with_mode, without = answers
    configured = (
        f"sent as {sent!r} when a job sets none" if sent else "not sent unless a job sets it"
    )
    if with_mode.finding is not Finding.EXISTS or without.finding is not Finding.EXISTS:
        worst = min(answers, key=lambda a: _SEVERITY.index(a.finding))
        detail = _short(worst.message)
        return Row(what, "POST", path, "unknown", detail, problem=True, finding=worst.finding)
    required = _names_mode(without) and not _names_mode(with_mode)
    refused = _names_mode(with_mode) and not _names_mode(without)
    verdict = "required" if required else "refused" if refused else "optional"
    if not (required or refused) and (_names_mode(with_mode) or _names_mode(without)):
        verdict = "unknown"
    problem = (required and not sent) or (refused and bool(sent))
    if problem:
        value = _mode_for(model_id) if required else None
        report.suggested.setdefault("default_params", {})[model_id] = {"mode": value}
    said = (without if required else with_mode).message.removeprefix(REFUSED)
    detail = configured + (f"; MetaChat: {said}" if required or refused else "")
    return Row(what, "POST", path, verdict, _short(detail), problem=problem, finding=None)


def _fallback_notes(client: MetaChatClient) -> list[Row]:
    notes: dict[tuple[str, str], Row] = {}
    for model in client.catalogue.models:
        for action in model.actions.values():
            fallback = action.result_fallback_path
            if fallback is None:
                continue
            notes[(action.result_path, fallback)] = Row(
                what=f"{model.id} results",
                method="GET",
                path=fallback,
                answer="fallback",
                detail=f"asked once when {action.result_path} does not know a task",
                relied_on=False,
                finding=None,
            )
    return list(notes.values())


def _hints(answers: Sequence[Answer], client: MetaChatClient) -> list[str]:
    found = {a.finding for a in answers}
    statuses = {a.http_status for a in answers if a.finding is Finding.AUTH}
    hints: list[str] = []
    app_id = (
        "check METACHAT_API_KEY and METACHAT_APP_ID (sent as X-App-ID)"
        if client.sends_app_id
        else "check METACHAT_API_KEY; keys issued with an App ID (2024 accounts) also need "
        "METACHAT_APP_ID, sent as the X-App-ID header"
    )
    if 401 in statuses:
        hints.append(f"MetaChat refused the key (401 authentication_error): {app_id}")
    if 403 in statuses:
        hints.append(
            "MetaChat says the key is expired or disabled (403 permission_error): make a new "
            f"one under API management, or {app_id}"
        )
    if Finding.UNREACHABLE in found:
        hints.append(
            f"MetaChat did not answer at {client.base_url}: check METACHAT_BASE_URL and the "
            "network (HTTPS_PROXY is used when set)"
        )
    if Finding.RATE_LIMITED in found:
        hints.append("MetaChat rate-limited the check: run it again in a minute")
    if any(a.out_of_points for a in answers):
        hints.append(
            "the account is out of API points: every submit fails (upstream_quota_exceeded) "
            "until points are bought"
        )
    if Finding.ACCEPTED in found:
        hints.append(
            "a path accepted a probe MetaChat should have refused: a task may have been "
            "created and charged (see the rows marked accepted)"
        )
    return hints


def _merged(
    current: Mapping[str, Any], suggested: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    merged = {
        key: dict(value) if isinstance(value, dict) else value for key, value in current.items()
    }
    for key, values in suggested.items():
        merged[key] = {**merged.get(key, {}), **values}
    return merged


def _exit_code(rows: Sequence[Row]) -> int:
    codes = {_row_code(row) for row in rows}
    for code in (EXIT_AUTH, EXIT_MISCONFIGURED, EXIT_INCONCLUSIVE):
        if code in codes:
            return code
    return EXIT_OK


def _row_code(row: Row) -> int:
    if not row.problem:
        return EXIT_OK
    if row.finding is Finding.AUTH:
        return EXIT_AUTH
    if row.finding in _INCONCLUSIVE:
        return EXIT_INCONCLUSIVE
    return EXIT_MISCONFIGURED
