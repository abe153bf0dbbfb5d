"""``python -m bench.chaos``: jobs of every family, with webhooks, through a hostile world.

    python -m bench.chaos                 # 2,000 jobs, report written to docs/benchmarks.md
    python -m bench.chaos --jobs 150 --no-write --json report.json

The simulator injects 10% 5xx, 5% 429, 2% read timeouts after accepting the task, and fails 5%
of tasks; the webhook receiver refuses 5% of deliveries. Meanwhile the script SIGKILLs the
worker twice, FLUSHALLs and restarts Redis once and restarts the API once. When everything has
drained it checks: every job terminal, none lost, none submitted twice upstream (outside
``submit_uncertain``, which is counted), and exactly one webhook event per terminal transition
after de-duplicating on ``webhook-id``. Exit status 1 when an invariant fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
from rich.console import Console
from rich.table import Table

from bench.chaos_checks import ChaosReport, collect
from bench.chaos_client import Submitted, submit_all
from bench.chaos_receiver import WebhookReceiver
from bench.report import Goal, Section, command_line, fmt, prose, table, write_sections
from bench.stack import SIM_API_KEY, Stack, StackError, create_api_key, fresh_postgres, psycopg_url

console = Console(stderr=True)

SIM_FAULTS = {
    "error_5xx_rate": 0.10,
    "rate_429_rate": 0.05,
    "read_timeout_rate": 0.02,
    "fail_rate": 0.05,
    "hang_seconds": 4.0,
}
SERVICE_ENV = {
    "POLL_TIME_SCALE": "0.02",  # the `fast` simulator runs at 2% of real durations
    "WEBHOOK_TIME_SCALE": "0.02",
    "WEBHOOK_ALLOW_PRIVATE": "true",
    "ARCHIVE_ALLOW_PRIVATE": "true",
    "METACHAT_READ_TIMEOUT": "2",  # shorter than the simulator's hang: a hung submit times out
    "LEASE_SECONDS": "5",  # a SIGKILLed worker's rows come back after this long
    "PROVIDER_RATE_PER_SECOND": '{"default": 50}',
    "PROVIDER_MAX_IN_FLIGHT": '{"default": 500}',
}
RECEIVER_FAIL_RATE = 0.05
# (share of progress at which it happens, what happens); progress counts submitted and terminal
# jobs together, so events land while jobs are still being accepted and while they drain
EVENTS: tuple[tuple[float, str], ...] = (
    (0.15, "kill worker"),
    (0.30, "restart api"),
    (0.45, "restart redis"),
    (0.65, "kill worker"),
)


@dataclasses.dataclass
class Timeline:
    started: float = dataclasses.field(default_factory=time.monotonic)
    events: list[tuple[float, str, float]] = dataclasses.field(default_factory=list)
    unplanned_restarts: list[str] = dataclasses.field(default_factory=list)
    submitted_at: float | None = None
    terminal_at: float | None = None
    drained_at: float | None = None

    def at(self) -> float:
        return time.monotonic() - self.started


def _counts(database_url: str) -> tuple[int, int, int]:
    """(jobs, terminal jobs, pending webhook deliveries)."""
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status NOT IN ('queued', 'running')),"
            " (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') FROM jobs"
        ).fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else (0, 0, 0)


def _do(stack: Stack, event: str, env: dict[str, str]) -> None:
    if event == "kill worker":
        stack.services["worker"].kill()
        stack.start_worker(env, concurrency=2)
    elif event == "restart api":
        stack.services["api"].stop()
        stack.start_api(env)
    elif event == "restart redis":
        stack.restart_redis(flush=True)
    else:
        raise ValueError(event)


def _supervise(stack: Stack, env: dict[str, str], timeline: Timeline) -> None:
    """Restart (and note) any service that died without being told to."""
    for name in ("api", "worker", "beat"):
        service = stack.services[name]
        if service.alive():
            continue
        code = service.process.poll() if service.process else None
        timeline.unplanned_restarts.append(f"{name} exited ({code}) at {timeline.at():.1f}s")
        if name == "api":
            stack.start_api(env)
        elif name == "worker":
            stack.start_worker(env, concurrency=2)
        else:
            stack.start_beat(env)


def run_chaos(
    jobs: int, *, drain_timeout: float, say: Callable[[str], None]
) -> tuple[ChaosReport, Timeline]:
    timeline = Timeline()
    with fresh_postgres() as url, Stack(database_url=url) as stack:
        sim_url = stack.start_sim(profile="fast", seed=11)
        sim_root = sim_url.rsplit("/open/v1", 1)[0]
        httpx.post(f"{sim_root}/_sim/config", json=SIM_FAULTS, timeout=10).raise_for_status()
        api_key, secret = create_api_key(stack, name="chaos", admin=False)
        env = {"METACHAT_BASE_URL": sim_url, "METACHAT_API_KEY": SIM_API_KEY, **SERVICE_ENV}
        with WebhookReceiver(secret, fail_rate=RECEIVER_FAIL_RATE) as hooks:
            base = stack.start_api(env)
            stack.start_worker(env, concurrency=2)
            stack.start_beat(env)
            submitted = Submitted()
            stop = threading.Event()
            errors: list[BaseException] = []

            def submitter() -> None:
                try:
                    submit_all(
                        base,
                        api_key,
                        jobs=jobs,
                        webhook_url=hooks.url,
                        tag="chaos",
                        submitted=submitted,
                        stop=stop,
                        pace=lambda: time.sleep(0.3),
                    )
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            thread = threading.Thread(target=submitter, name="submitter", daemon=True)
            timeline.started = time.monotonic()
            thread.start()
            pending_events = list(EVENTS)
            deadline = time.monotonic() + drain_timeout
            try:
                while True:
                    if errors:
                        raise StackError(f"the submitter failed: {errors[0]}")
                    total, terminal, pending = _counts(url)
                    done_submitting = not thread.is_alive()
                    if done_submitting and timeline.submitted_at is None:
                        timeline.submitted_at = timeline.at()
                    progress = (submitted.count + terminal) / (2 * jobs)
                    if pending_events and (
                        progress >= pending_events[0][0] or (done_submitting and terminal == total)
                    ):
                        _, event = pending_events.pop(0)
                        say(f"{timeline.at():6.1f}s  {event} (progress {progress:.0%})")
                        _do(stack, event, env)
                        timeline.events.append((timeline.at(), event, progress))
                    _supervise(stack, env, timeline)
                    if done_submitting and not pending_events and terminal == total:
                        if timeline.terminal_at is None:
                            timeline.terminal_at = timeline.at()
                            say(f"{timeline.at():6.1f}s  all {total} jobs terminal")
                        if pending == 0 and _webhooks_complete(url, hooks):
                            timeline.drained_at = timeline.at()
                            break
                    if time.monotonic() > deadline:
                        say(
                            f"drain timeout after {drain_timeout:.0f}s: {terminal}/{total} terminal"
                        )
                        break
                    time.sleep(0.25)
            finally:
                stop.set()
                thread.join(timeout=30)
            sim_stats = httpx.get(f"{sim_root}/_sim/stats", timeout=30).json()
            received = hooks.received
            with received.lock:
                events, deliveries = dict(received.events), received.deliveries.copy()
                bad = received.bad_signatures
            report = collect(url, submitted, events, deliveries, bad, sim_stats)
    return report, timeline


def _webhooks_complete(database_url: str, hooks: WebhookReceiver) -> bool:
    with psycopg.connect(psycopg_url(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM job_events WHERE to_status IN "
            "('succeeded', 'failed', 'cancelled', 'timed_out')"
            " AND from_status IS DISTINCT FROM to_status"
        ).fetchone()
    wanted = int(row[0]) if row else 0
    got = sum(1 for kind, _ in hooks.received.snapshot().values() if kind != "batch.completed")
    return got >= wanted


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def section(report: ChaosReport, timeline: Timeline, jobs: int) -> Section:
    events = ", ".join(
        f"{name} at {at:.0f} s ({progress:.0%})" for at, name, progress in timeline.events
    )
    rows = [
        ["jobs accepted", f"{report.jobs:,}"],
        [
            "terminal",
            f"{report.terminal:,} ({_pairs(report.by_status)})",
        ],
        ["error codes", _pairs(report.by_error) or "—"],
        ["timed out, then found succeeded (late successes)", str(report.late_successes)],
        ["lost", str(report.lost)],
        ["prompts accepted as two jobs", str(report.duplicate_jobs)],
        ["submitted twice upstream (outside submit_uncertain)", str(report.duplicate_submits)],
        [
            "submit_uncertain jobs (submitted twice among them)",
            f"{report.uncertain} ({report.uncertain_duplicate_submits})",
        ],
        [
            "submit_uncertain jobs whose task was in fact created upstream",
            str(report.uncertain_created_upstream),
        ],
        [
            "distinct webhook-ids received (redeliveries of them)",
            f"{report.webhook_ids:,} ({report.webhook_redeliveries})",
        ],
        [
            "terminal transitions without their webhook / with extra ones",
            f"{report.jobs_missing_webhook} / {report.jobs_with_extra_webhooks}",
        ],
        [
            "batches without exactly one batch.completed",
            f"{report.batches_missing_webhook} of {report.batches}",
        ],
        ["webhooks failing signature checks", str(report.bad_signatures)],
        [
            "simulator: submit requests, tasks created, polls",
            ", ".join(
                str(report.sim.get(k)) for k in ("submit_requests", "tasks_created", "polls")
            ),
        ],
        [
            "simulator: faults injected",
            ", ".join(f"{k} {v}" for k, v in sorted((report.sim.get("faults") or {}).items())),
        ],
        ["chaos", events],
        ["unplanned restarts", "; ".join(timeline.unplanned_restarts) or "none"],
        [
            "all submitted at / all terminal at / drained (webhooks too) at",
            " / ".join(
                fmt(v, 1) + " s" if v is not None else "—"
                for v in (timeline.submitted_at, timeline.terminal_at, timeline.drained_at)
            ),
        ],
    ]
    body = "\n\n".join(
        [
            prose(
                f"""{jobs:,} jobs across every family (Midjourney imagine and video, FLUX, Z-Image,
                Seedream, Grok image and video), in batches of 50 and single jobs, each with a
                webhook to a local receiver that verifies signatures with `standardwebhooks` and
                refuses {RECEIVER_FAIL_RATE:.0%} of deliveries. The `fast` simulator injects 10%
                5xx, 5% 429, 2% read timeouts after creating the task, and fails 5% of tasks.
                The script SIGKILLs the worker (its whole process group) twice, FLUSHALLs and
                restarts the private Redis once and restarts the API once; the client retries
                through the API's downtime with an `Idempotency-Key`. Time scales: polls and
                webhook retries at 2%, leases of 5 s."""
            ),
            table(["", ""], rows),
        ]
    )
    goals = [
        Goal(
            "jobs terminal",
            f"{report.terminal:,}/{report.jobs:,}",
            "all",
            report.terminal == report.jobs,
        ),
        Goal("jobs lost", str(report.lost), "0", report.lost == 0),
        Goal(
            "submitted twice upstream",
            str(report.duplicate_submits),
            "0",
            report.duplicate_submits == 0,
        ),
        Goal(
            "webhook events per terminal transition",
            f"{report.jobs_missing_webhook} missing, {report.jobs_with_extra_webhooks} extra",
            "exactly one",
            report.jobs_missing_webhook == 0 and report.jobs_with_extra_webhooks == 0,
        ),
        Goal(
            "time to drain",
            f"{fmt(timeline.drained_at or float('nan'), 1)} s",
            "reported",
            timeline.drained_at is not None,
        ),
    ]
    return Section("chaos", "Chaos run", body, goals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument(
        "--drain-timeout", type=float, default=0.0, help="seconds (default: scales with --jobs)"
    )
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument("--json", default="", help="also write the report as JSON here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    drain = args.drain_timeout or max(240.0, args.jobs * 0.4)
    report, timeline = run_chaos(args.jobs, drain_timeout=drain, say=console.print)
    result = section(report, timeline, args.jobs)
    out = Table(title="chaos")
    out.add_column("invariant")
    out.add_column("measured")
    out.add_column("")
    for goal in result.goals:
        out.add_row(goal.name, goal.value, "[green]ok[/]" if goal.met else "[red]FAILED[/]")
    console.print(out)
    for violation in report.violations:
        console.print(f"[red]violated:[/] {violation}")
    if args.json:
        data: dict[str, Any] = {
            **dataclasses.asdict(report),
            "timeline": dataclasses.asdict(timeline),
        }
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    if not args.no_write:
        write_sections([result], command=command_line())
    return 1 if report.violations or timeline.drained_at is None else 0


if __name__ == "__main__":
    sys.exit(main())
