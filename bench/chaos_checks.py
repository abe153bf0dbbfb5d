"""The chaos run's invariants, read from the database, the simulator's counters and the webhook
receiver once everything has drained."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import psycopg

from bench.chaos_client import Submitted
from bench.stack import psycopg_url

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
UNCERTAIN = "submit_uncertain"


@dataclass
class ChaosReport:
    """Everything the run found; `violations` lists each broken invariant in words."""

    jobs: int = 0
    terminal: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_error: dict[str, int] = field(default_factory=dict)
    lost: int = 0
    duplicate_jobs: int = 0
    duplicate_submits: int = 0
    uncertain: int = 0
    uncertain_duplicate_submits: int = 0
    late_successes: int = 0  # timed_out, then found succeeded by the reconcile pass
    uncertain_created_upstream: int = 0  # the task exists upstream (charged) but we hold no id
    webhook_ids: int = 0
    webhook_redeliveries: int = 0
    jobs_missing_webhook: int = 0
    jobs_with_extra_webhooks: int = 0
    batches: int = 0
    batches_missing_webhook: int = 0
    bad_signatures: int = 0
    deliveries_by_state: dict[str, int] = field(default_factory=dict)
    missing_webhook_examples: list[dict[str, Any]] = field(default_factory=list)
    sim: dict[str, Any] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def check(self) -> None:
        rules = [
            (self.terminal == self.jobs, f"{self.jobs - self.terminal} jobs not terminal"),
            (self.lost == 0, f"{self.lost} submitted jobs lost"),
            (self.duplicate_jobs == 0, f"{self.duplicate_jobs} prompts accepted as 2+ jobs"),
            (
                self.duplicate_submits == 0,
                f"{self.duplicate_submits} jobs submitted twice upstream "
                "(outside submit_uncertain)",
            ),
            (
                self.jobs_missing_webhook == 0,
                f"{self.jobs_missing_webhook} terminal transitions without a webhook",
            ),
            (
                self.jobs_with_extra_webhooks == 0,
                f"{self.jobs_with_extra_webhooks} jobs with more distinct webhook events than "
                "terminal transitions",
            ),
            (
                self.batches_missing_webhook == 0,
                f"{self.batches_missing_webhook} batches without exactly one batch.completed",
            ),
            (self.bad_signatures == 0, f"{self.bad_signatures} webhooks failed verification"),
        ]
        self.violations = [message for ok, message in rules if not ok]


def collect(
    database_url: str,
    submitted: Submitted,
    events: dict[str, tuple[str, str]],
    deliveries: Counter[str],
    bad_signatures: int,
    sim_stats: dict[str, Any],
) -> ChaosReport:
    """Read every source of truth and count what the invariants need."""
    report = ChaosReport(bad_signatures=bad_signatures)
    with psycopg.connect(psycopg_url(database_url)) as conn:
        jobs = conn.execute("SELECT id, prompt, status, error_code FROM jobs").fetchall()
        transitions: dict[str, int] = dict(
            conn.execute(
                "SELECT job_id, count(*) FROM job_events WHERE to_status = ANY(%s)"
                " AND from_status IS DISTINCT FROM to_status GROUP BY job_id",
                (list(TERMINAL),),
            ).fetchall()
        )
        late = conn.execute(
            "SELECT count(*) FROM job_events"
            " WHERE from_status = 'timed_out' AND to_status = 'succeeded'"
        ).fetchone()
        report.late_successes = int(late[0]) if late else 0
        batch_ids = [row[0] for row in conn.execute("SELECT id FROM batches").fetchall()]
        report.deliveries_by_state = {
            f"{kind} {state}": int(n)
            for kind, state, n in conn.execute(
                "SELECT event_type, state, count(*) FROM webhook_deliveries GROUP BY 1, 2"
            ).fetchall()
        }
        delivery_rows = conn.execute(
            "SELECT job_id, event_type, state, attempts, last_status_code, last_error"
            " FROM webhook_deliveries WHERE job_id IS NOT NULL"
        ).fetchall()
    deliveries_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for job_id, kind, state, attempts, code, error in delivery_rows:
        deliveries_of[job_id].append(
            {"event": kind, "state": state, "attempts": attempts, "code": code, "error": error}
        )
    report.jobs = len(jobs)
    statuses = Counter(status for _, _, status, _ in jobs)
    report.by_status = dict(statuses)
    report.by_error = dict(Counter(code for *_, code in jobs if code))
    report.terminal = sum(statuses[s] for s in TERMINAL)

    by_prompt: dict[str, list[tuple[str, str, str | None]]] = defaultdict(list)
    for job_id, prompt, status, code in jobs:
        by_prompt[prompt].append((job_id, status, code))
    with submitted.lock:
        attempted = set(submitted.attempted_prompts)
    missing = [p for p in attempted if p not in by_prompt]
    not_terminal = [
        p for p, rows in by_prompt.items() if any(s not in TERMINAL for _, s, _ in rows)
    ]
    report.lost = len(missing) + len(not_terminal)
    report.duplicate_jobs = sum(1 for rows in by_prompt.values() if len(rows) > 1)

    upstream = Counter({str(k): int(v) for k, v in sim_stats.get("submits_by_prompt", {}).items()})
    report.uncertain = sum(1 for *_, code in jobs if code == UNCERTAIN)
    report.uncertain_created_upstream = sum(
        1 for _, prompt, _, code in jobs if code == UNCERTAIN and upstream[prompt] > 0
    )
    for prompt, count in upstream.items():
        if count <= 1:
            continue
        codes = {code for _, _, code in by_prompt.get(prompt, [])}
        if UNCERTAIN in codes:
            report.uncertain_duplicate_submits += 1
        else:
            report.duplicate_submits += 1

    per_subject: dict[str, set[str]] = defaultdict(set)
    batch_events: Counter[str] = Counter()
    for webhook_id, (event_type, subject) in events.items():
        if event_type == "batch.completed":
            batch_events[subject] += 1
        else:
            per_subject[subject].add(webhook_id)
    report.webhook_ids = len(events)
    report.webhook_redeliveries = sum(n - 1 for n in deliveries.values())
    for job_id, *_ in jobs:
        wanted = int(transitions.get(job_id, 0))
        got = len(per_subject.get(job_id, set()))
        if got < wanted:
            report.jobs_missing_webhook += 1
            if len(report.missing_webhook_examples) < 10:
                status, code = next((s, c) for j, _, s, c in jobs if j == job_id)
                report.missing_webhook_examples.append(
                    {
                        "job_id": job_id,
                        "status": status,
                        "error_code": code,
                        "terminal_transitions": wanted,
                        "deliveries": deliveries_of.get(job_id, []),
                    }
                )
        elif got > wanted:
            report.jobs_with_extra_webhooks += 1
    report.batches = len(batch_ids)
    report.batches_missing_webhook = sum(1 for b in batch_ids if batch_events[b] != 1)
    report.sim = {
        k: sim_stats.get(k)
        for k in (
            "submit_requests",
            "tasks_created",
            "polls",
            "rate_limited",
            "errors_5xx",
            "faults",
        )
    }
    report.check()
    return report
